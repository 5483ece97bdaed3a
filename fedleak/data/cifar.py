"""CIFAR-10 and CIFAR-100 in torchvision's layout (``data_root/cifar-10-batches-py/…``).

Before anything is unpickled, every file is checked against torchvision's MD5s, so the
messages tell a missing folder, a folder in another layout and a corrupt file apart.
``download = true`` fetches the archive only when the batches folder is absent, into a
temporary folder inside ``data_root`` (see :mod:`fedleak.data.downloads`), and moves the
checked batches folder in; nothing already in ``data_root`` is replaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from fedleak.core.errors import FedleakError
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset, StoredDatasetConfig, default_root
from fedleak.data.downloads import check_md5, extract, fetch, place, staging

_GET_IT = "set dataset.download = true where a network exists, or point data_root at the folder holding it"


class CifarConfig(StoredDatasetConfig):
    name: Literal["cifar10", "cifar100"] = "cifar10"


def _load(config: CifarConfig, class_name: str, num_classes: int) -> DatasetSplits:
    from torchvision import datasets as tv_datasets  # torchvision only when CIFAR is used

    tv_class = getattr(tv_datasets, class_name)
    root = default_root(config)
    if config.download and not (root / tv_class.base_folder).exists():
        _download(tv_class, root)
    check_files(config, tv_class, root)
    return DatasetSplits(
        name=config.name,
        train=_split(tv_class, root, train=True),
        test=_split(tv_class, root, train=False),
        num_classes=num_classes,
    )


def _files(tv_class: Any) -> list[tuple[str, str]]:
    """(name, MD5) of every file of the batches folder."""
    return [*map(tuple, tv_class.train_list), *map(tuple, tv_class.test_list),
            (tv_class.meta["filename"], tv_class.meta["md5"])]


def check_files(config: CifarConfig, tv_class: Any, root: Path) -> None:
    """``root`` holds the batches folder with every file, each matching its MD5.

    Raises:
        FedleakError: one line: the folder is missing, in another layout, or a file is corrupt.
    """
    if not root.is_dir():
        raise FedleakError(f"dataset.data_root: {config.name} not found: {root} does not exist; {_GET_IT}")
    folder, files = root / tv_class.base_folder, _files(tv_class)
    missing = [name for name, _ in files if not (folder / name).is_file()]
    if missing:
        raise FedleakError(
            f"dataset.data_root: {config.name} not found in {root}: expected torchvision's layout {folder}/ with "
            f"{', '.join(name for name, _ in files)} (missing: {', '.join(missing)}){_hint(tv_class, root)}")
    try:
        for name, md5 in files:
            check_md5(folder / name, md5)
    except FedleakError as error:
        kept = f"; download = true never replaces it: remove {folder} to download again" if config.download else ""
        raise FedleakError(f"{error}{kept}") from None


def _hint(tv_class: Any, root: Path) -> str:
    """What the folder looks like instead, where that is recognisable."""
    if (root / tv_class.train_list[0][0]).is_file():
        return f"; data_root is the batches folder itself: set it to its parent, {root.parent}"
    if (root / tv_class.filename).is_file():
        return f"; {tv_class.filename} is there: extract it in {root}"
    if (root / tv_class.base_folder).exists():
        return f"; complete {root / tv_class.base_folder}, or remove it and set dataset.download = true"
    return f"; {_GET_IT}"


def _download(tv_class: Any, root: Path) -> None:
    """Fetch and unpack the archive in a temporary folder inside ``root``, then move the batches folder in."""
    with staging(root) as folder:
        extract(fetch([tv_class.url], folder, tv_class.filename, tv_class.tgz_md5), folder)
        place(folder / tv_class.base_folder, root / tv_class.base_folder)


def _split(tv_class: Any, root: Path, train: bool) -> ImageDataset:
    data = tv_class(str(root), train=train, download=False)  # files checked above
    images = torch.from_numpy(data.data).permute(0, 3, 1, 2).float() / 255.0
    return ImageDataset(images, torch.tensor(data.targets, dtype=torch.int64))


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
