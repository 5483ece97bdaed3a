"""Image datasets by name, as tensors in [0, 1].

Each loader is registered in :data:`DATASETS` by its own module and returns a
:class:`DatasetSplits`. Loading is cached per process: in a simulation the server and
every client actor ask for the same data many times.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from pydantic import Field, field_validator

from fedleak.core.config import DatasetConfig
from fedleak.core.digests import array_digest
from fedleak.core.errors import FedleakError, first_line
from fedleak.core.registry import Registry


@dataclass(frozen=True)
class ImageDataset:
    """Images ``(N, C, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError("images must be (N, C, H, W) with one label each")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def digest(self) -> str:
        """SHA-256 of the images and labels (see :mod:`fedleak.core.digests`)."""
        return array_digest([self.images, self.labels])

    def subset(self, index: torch.Tensor | slice) -> ImageDataset:
        """The samples at ``index`` (indices or a slice), images and labels together."""
        return ImageDataset(self.images[index], self.labels[index])


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's training pool (partitioned among clients) and its test split."""

    name: str
    train: ImageDataset
    test: ImageDataset
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.train.image_shape

    @property
    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training pool (the model normalises with them)."""
        images = self.train.images
        mean = images.mean(dim=(0, 2, 3))
        std = images.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return tuple(mean.tolist()), tuple(std.tolist())

    @property
    def pixel_mean(self) -> tuple[float, ...]:
        """The training pool's per-pixel mean, flattened row-major from (C, H, W)."""
        return tuple(self.train.images.mean(dim=0).flatten().tolist())


class StoredDatasetConfig(DatasetConfig):
    """A dataset read from files in a folder (fedleak never writes there unless ``download``)."""

    data_root: Path | None = None
    """Folder with the dataset's files. ``None``: ``~/.cache/fedleak/<name>``."""
    download: bool = Field(False, strict=True)
    """Download the files missing from ``data_root`` (needs a network). Files are fetched
    into a temporary folder inside it, checked against torchvision's MD5s and only then
    moved in; a file or folder already there is never replaced."""

    @field_validator("data_root")
    @classmethod
    def _not_a_file(cls, root: Path | None) -> Path | None:
        """A file given as the folder is refused as what it is, when the scenario is read: the
        loaders would otherwise report it as a folder that does not exist."""
        if root is not None and root.expanduser().exists() and not root.expanduser().is_dir():
            what = "a file" if root.expanduser().is_file() else "not a folder"
            raise ValueError(f"{root} is {what}; expected a folder (the one holding the dataset's files)")
        return root

    @property
    def source(self) -> str:
        """Where the data comes from, for messages."""
        return str(default_root(self))


class DatasetLoader(Protocol):
    """A registered dataset: its ``Config`` and ``load(config)`` → the splits."""

    Config: type[DatasetConfig]

    @staticmethod
    def load(config: Any) -> DatasetSplits: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")


def dataset_config(name: str, **options: Any) -> DatasetConfig:
    """The config of the dataset called ``name``, with ``options`` (validated)."""
    return DATASETS.get(name).Config(name=name, **options)


def load_dataset(config: DatasetConfig) -> DatasetSplits:
    """Load (once per process) the dataset the config names.

    ``config`` may be the base :class:`DatasetConfig` (``DatasetConfig(name="mnist")``):
    it is then read as that dataset's own config, with its defaults.

    Raises:
        FedleakError: one line, also for what a loader did not foresee (a corrupt file).
    """
    loader = DATASETS.get(config.name)
    if not isinstance(config, loader.Config):
        config = loader.Config.model_validate(config.model_dump(exclude_unset=True))
    try:
        return _load_cached(config)
    except FedleakError:
        raise
    except Exception as error:  # noqa: BLE001 - unreadable data is bad input, not a crash
        raise FedleakError(f"dataset {config.name}: cannot load from {config.source}: "
                           f"{type(error).__name__}: {first_line(error)}") from None


@functools.lru_cache(maxsize=4)
def _load_cached(config: DatasetConfig) -> DatasetSplits:
    """Cached on the whole config (every option is part of the key)."""
    splits = DATASETS.get(config.name).load(config)
    for split, images in (("training", splits.train), ("test", splits.test)):
        if len(images) == 0:
            raise FedleakError(f"dataset {config.name}: the {split} split is empty")
        if not bool(torch.isfinite(images.images).all()):
            raise FedleakError(f"dataset {config.name}: the {split} split holds non-finite pixels")
    return splits


def default_root(config: StoredDatasetConfig) -> Path:
    return config.data_root or Path.home() / ".cache" / "fedleak" / config.name

