"""``npz``: images and labels as arrays in one NumPy ``.npz`` file.

The file holds ``x`` (the images) and ``y`` (their labels), optionally ``x_test`` and
``y_test``; other arrays are ignored. Images are ``N×C×H×W``, ``N×H×W×C`` or ``N×H×W``
(one channel): ``layout = "auto"`` takes the axis of size 1 or 3 as the channels, or
``layout`` says which. Pixels are uint8 (0–255) or floats in [0, 1]. The file is read
with ``allow_pickle=False``: it cannot run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from fedleak.core.errors import FedleakError, first_line
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset
from fedleak.data.images import ImageSourceConfig, adjust, as_labels, count_classes, split_off_test

_KEY = "dataset.path"
_CHANNELS = (1, 3)


class NpzConfig(ImageSourceConfig):
    name: Literal["npz"] = "npz"
    path: Path
    """The ``.npz`` file (relative paths: from the working directory)."""
    layout: Literal["auto", "nchw", "nhwc"] = "auto"
    """Where the channel axis of 4-D image arrays is; ``auto``: the one of size 1 or 3."""
    num_classes: int | None = Field(None, ge=1, le=1_000_000)
    """Classes the model tells apart; ``None``: the largest label + 1."""

    @field_validator("path")
    @classmethod
    def _is_a_file(cls, path: Path) -> Path:
        path = path.expanduser().absolute()
        if not path.is_file():
            raise ValueError(f"{path} {'is not a file' if path.exists() else 'does not exist'}")
        return path

    @property
    def source(self) -> str:
        return str(self.path)


@DATASETS.register("npz")
class Npz:
    Config = NpzConfig

    @staticmethod
    def load(config: NpzConfig) -> DatasetSplits:
        arrays = read_npz(config.path)
        train = _images_and_labels(arrays, "x", "y", config)
        if "x_test" in arrays or "y_test" in arrays:
            test = _images_and_labels(arrays, "x_test", "y_test", config)
            if test.image_shape != train.image_shape:
                raise FedleakError(f"{_KEY}: x_test holds {_shape(test.image_shape)} images, "
                                   f"x {_shape(train.image_shape)} ones (C×H×W)")
        else:
            train, test = split_off_test(train, config.test_fraction, config.split_seed)
        num_classes = count_classes(torch.cat([train.labels, test.labels]), config.num_classes, "dataset.num_classes")
        return DatasetSplits(name=config.name, train=train, test=test, num_classes=num_classes)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the file, read without pickles.

    Raises:
        FedleakError: the file is not a readable ``.npz`` or holds objects (pickles).
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise FedleakError(f"{_KEY}: {path} holds a single array, not x and y; save them with numpy.savez")
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # object arrays: ValueError
        raise FedleakError(f"{_KEY}: cannot read {path} as a .npz file: {first_line(error)}") from None


def _images_and_labels(arrays: dict[str, np.ndarray], x_key: str, y_key: str, config: NpzConfig) -> ImageDataset:
    x, y = (_array(arrays, key, config.path) for key in (x_key, y_key))
    images = _to_images(x, x_key, config.layout)
    labels = as_labels(y, f"{_KEY}: {y_key}")
    if len(images) != len(labels):
        raise FedleakError(f"{_KEY}: {x_key} holds {len(images)} images, {y_key} {len(labels)} labels; "
                           "expected one label per image")
    return ImageDataset(adjust(images, config), labels)


def _array(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise FedleakError(f"{_KEY}: {path} has no array '{key}' (it holds: {', '.join(sorted(arrays)) or 'none'}); "
                           "expected x (images) and y (labels), optionally x_test and y_test")
    return arrays[key]


def _to_images(x: np.ndarray, key: str, layout: str) -> torch.Tensor:
    """An image array as ``(N, C, H, W)`` float32 in [0, 1].

    Raises:
        FedleakError: one line: the dtype, the shape, a non-finite value or a value outside [0, 1].
    """
    pixels = _channels_first(x, key, layout)
    if pixels.dtype == np.uint8:
        return torch.from_numpy(pixels.astype(np.float32) / 255.0)
    if pixels.dtype.kind != "f":
        raise FedleakError(f"{_KEY}: {key} has dtype {pixels.dtype}; expected uint8 (0–255) or floats in [0, 1]")
    finite = np.isfinite(pixels)
    if not finite.all():
        raise FedleakError(f"{_KEY}: {key} holds {int((~finite).sum())} non-finite values (NaN or infinite)")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 1):
        raise FedleakError(f"{_KEY}: {key} holds values in [{pixels.min():g}, {pixels.max():g}]; float images must "
                           "lie in [0, 1] (or save them as uint8, 0–255)")
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))


def _channels_first(x: np.ndarray, key: str, layout: str) -> np.ndarray:
    """``x`` as ``N×C×H×W``: the channel axis found by ``layout`` (``auto``: the one of size 1 or 3)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise FedleakError(f"{_KEY}: {key} has shape {x.shape}; expected N×H×W, N×C×H×W or N×H×W×C images")
    if layout == "auto":
        first, last = x.shape[1] in _CHANNELS, x.shape[3] in _CHANNELS
        if first == last:
            which = "both axis 1 and axis 3" if first else "neither axis 1 nor axis 3"
            raise FedleakError(f"{_KEY}: {key} has shape {x.shape}: {which} can be the channels (size 1 or 3); "
                               'set dataset.layout = "nchw" or "nhwc"')
        layout = "nchw" if first else "nhwc"
    return x if layout == "nchw" else x.transpose(0, 3, 1, 2)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
