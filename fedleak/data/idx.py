"""MNIST and Fashion-MNIST from their official idx files.

Looks in ``data_root`` (and torchvision's ``<root>/<Class>/raw`` layout) for the idx
files, gzipped or not. A folder holding only the two ``t10k`` files (as
``../shared/data/mnist``) is enough: then the test split is divided into a training
pool (the first 8,000 images) and a test split (the last 2,000). With
``download = true`` torchvision fetches the files where a network exists.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets

from fedleak.config import DatasetConfig
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset, default_root
from fedleak.errors import FedleakError

log = logging.getLogger(__name__)

_T10K_TRAIN = 8000  # images of t10k used as the training pool when no train split exists


def read_idx(path: Path) -> np.ndarray:
    """Parse one idx file (``.gz`` or raw): magic, dims as big-endian uint32, uint8 data."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (f"{stem}.gz", stem):
            if (folder / name).is_file():
                return folder / name
    return None


def _split(folders: list[Path], prefix: str) -> ImageDataset | None:
    images = _find(folders, f"{prefix}-images-idx3-ubyte")
    labels = _find(folders, f"{prefix}-labels-idx1-ubyte")
    if images is None or labels is None:
        return None
    pixels = torch.from_numpy(read_idx(images).copy()).float().unsqueeze(1) / 255.0
    return ImageDataset(pixels, torch.from_numpy(read_idx(labels).astype(np.int64)))


def _load(config: DatasetConfig, tv_class: type) -> DatasetSplits:
    root = default_root(config)
    if config.download:
        tv_class(str(root), train=True, download=True)
        tv_class(str(root), train=False, download=True)
    folders = [root, root / tv_class.__name__ / "raw"]
    train, test = _split(folders, "train"), _split(folders, "t10k")
    if test is None:
        raise FedleakError(
            f"dataset.data_root: no {config.name} idx files in {root} (need "
            "t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]); "
            "set dataset.download = true where a network exists"
        )
    if train is None:
        log.info("%s: only the t10k split found; using its first %d images for training",
                 config.name, _T10K_TRAIN)
        train, test = test.subset(slice(_T10K_TRAIN)), test.subset(slice(_T10K_TRAIN, None))
    return DatasetSplits(name=config.name, train=train, test=test, num_classes=10)


@DATASETS.register("mnist")
def load_mnist(config: DatasetConfig) -> DatasetSplits:
    return _load(config, tv_datasets.MNIST)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(config: DatasetConfig) -> DatasetSplits:
    return _load(config, tv_datasets.FashionMNIST)
