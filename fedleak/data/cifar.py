"""CIFAR-10 and CIFAR-100 through torchvision (download or an existing ``data_root``)."""

from __future__ import annotations

from typing import Any, Literal

import torch

from fedleak.core.errors import FedleakError
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset, StoredDatasetConfig, default_root


def _split(tv_class: Any, config: CifarConfig, train: bool) -> ImageDataset:
    root = default_root(config)
    try:
        data = tv_class(str(root), train=train, download=config.download)
    except RuntimeError:
        raise FedleakError(
            f"dataset.data_root: {config.name} not found in {root}; point data_root at "
            "the extracted batches or set dataset.download = true where a network exists"
        ) from None
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).float() / 255.0
    return ImageDataset(images, torch.tensor(data.targets, dtype=torch.int64))


def _load(config: CifarConfig, class_name: str, num_classes: int) -> DatasetSplits:
    from torchvision import datasets as tv_datasets  # torchvision only when CIFAR is used

    tv_class = getattr(tv_datasets, class_name)
    return DatasetSplits(
        name=config.name,
        train=_split(tv_class, config, train=True),
        test=_split(tv_class, config, train=False),
        num_classes=num_classes,
    )


class CifarConfig(StoredDatasetConfig):
    name: Literal["cifar10", "cifar100"] = "cifar10"


@DATASETS.register("cifar10")
class Cifar10:
    Config = CifarConfig

    @staticmethod
    def load(config: CifarConfig) -> DatasetSplits:
        return _load(config, "CIFAR10", 10)


@DATASETS.register("cifar100")
class Cifar100:
    Config = CifarConfig

    @staticmethod
    def load(config: CifarConfig) -> DatasetSplits:
        return _load(config, "CIFAR100", 100)
