"""MNIST and Fashion-MNIST from their official idx files.

Looks in ``data_root`` (and torchvision's ``<root>/<Class>/raw`` layout) for the idx
files, gzipped or not. A folder holding only the two ``t10k`` files (as
``../shared/data/mnist``) is enough: then the test split is divided into a training
pool (the first 8,000 images) and a test split (the last 2,000). Files found are checked
by their structure (header, size, labels), so idx files of your own load too. With
``download = true`` the official files that are missing are fetched, checked against
torchvision's MD5s and moved to ``<root>/<Class>/raw`` (see :mod:`fedleak.data.downloads`);
a file already there is never replaced.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fedleak.core.errors import FedleakError
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset, StoredDatasetConfig, default_root
from fedleak.data.downloads import fetch, place, staging

log = logging.getLogger(__name__)

_T10K_TRAIN = 8000  # images of t10k used as the training pool when no train split exists


def read_idx(path: Path) -> np.ndarray:
    """Parse one idx file (``.gz`` or raw): magic 0x0000 08 ndim, dims as big-endian
    uint32, uint8 data.

    Raises:
        FedleakError: the file cannot be read or is not a complete uint8 idx file.
    """
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a cut .gz ends in EOFError
        raise FedleakError(f"dataset.data_root: cannot read {path}: {str(error) or type(error).__name__}") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 4:
        raise FedleakError(f"dataset.data_root: {path} is not a uint8 idx file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected:
        raise FedleakError(f"dataset.data_root: {path} holds {len(raw)} bytes, its header promises {expected}")
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
    pixels, targets = read_idx(images), read_idx(labels)
    if pixels.ndim != 3 or targets.ndim != 1 or len(pixels) != len(targets):
        raise FedleakError(f"dataset.data_root: {images.name} ({pixels.shape}) and {labels.name} "
                           f"({targets.shape}) are not N images with N labels")
    if targets.max(initial=0) > 9:
        raise FedleakError(f"dataset.data_root: {labels} has label {targets.max()}; expected 0..9")
    return ImageDataset(torch.from_numpy(pixels.copy()).float().unsqueeze(1) / 255.0,
                        torch.from_numpy(targets.astype(np.int64)))


def _load(config: IdxConfig, class_name: str) -> DatasetSplits:
    root = default_root(config)
    folders = [root, root / class_name / "raw"]
    if config.download:
        _download(class_name, folders)
    if not root.is_dir():
        raise FedleakError(f"dataset.data_root: no {config.name} idx files: {root} does not exist; "
                           "set dataset.download = true where a network exists, or point data_root at the files")
    train, test = _split(folders, "train"), _split(folders, "t10k")
    if test is None:
        found = sorted(entry.name for entry in root.iterdir())
        raise FedleakError(
            f"dataset.data_root: no {config.name} idx files in {root}: expected t10k-images-idx3-ubyte[.gz] and "
            f"t10k-labels-idx1-ubyte[.gz] (and optionally the train- pair) in it or in {folders[1]} "
            f"(found: {', '.join(found[:5]) or 'nothing'}{', …' if len(found) > 5 else ''}); "
            "set dataset.download = true where a network exists"
        )
    if train is None:
        if len(test) <= _T10K_TRAIN:
            raise FedleakError(f"dataset.data_root: only the t10k split found and it has {len(test)} images; "
                               f"more than {_T10K_TRAIN} are needed to split off a test set")
        log.info("%s: only the t10k split found; using its first %d images for training",
                 config.name, _T10K_TRAIN)
        train, test = test.subset(slice(_T10K_TRAIN)), test.subset(slice(_T10K_TRAIN, None))
    return DatasetSplits(name=config.name, train=train, test=test, num_classes=10)


def _download(class_name: str, folders: list[Path]) -> None:
    """Fetch the official files not found in ``folders`` (checked by MD5) into the last of them."""
    from torchvision import datasets as tv_datasets  # torchvision only to download

    tv_class = getattr(tv_datasets, class_name)
    missing = [(name, md5) for name, md5 in tv_class.resources if _find(folders, name.removesuffix(".gz")) is None]
    if not missing:
        return
    with staging(folders[0]) as folder:
        fetched = [fetch([f"{mirror}{name}" for mirror in tv_class.mirrors], folder, name, md5)
                   for name, md5 in missing]
        for path in fetched:
            place(path, folders[-1] / path.name)


class IdxConfig(StoredDatasetConfig):
    name: Literal["mnist", "fashion-mnist"] = "mnist"


@DATASETS.register("mnist")
class Mnist:
    Config = IdxConfig

    @staticmethod
    def load(config: IdxConfig) -> DatasetSplits:
        return _load(config, "MNIST")


@DATASETS.register("fashion-mnist")
class FashionMnist:
    Config = IdxConfig

    @staticmethod
    def load(config: IdxConfig) -> DatasetSplits:
        return _load(config, "FashionMNIST")
