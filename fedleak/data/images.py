"""What the user-data loaders share: image options, decoding, resizing, labels, the test split.

``image-folder``, ``npz`` and ``huggingface`` read images from different containers and
then go through the same steps here: decode (PIL, imported only when a file is read) →
stack into ``(N, C, H, W)`` float32 in [0, 1] → grayscale → resize → a seeded,
stratified test split when the source has none.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, field_validator

from fedleak.core.config import DatasetConfig, Seed
from fedleak.core.errors import FedleakError, first_line
from fedleak.data.datasets import ImageDataset

Side = Annotated[int, Field(ge=1, le=4096)]

LUMA = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights: what PIL's ``convert("L")`` (and torchvision's Grayscale) use."""

_SPLIT_STREAM = 0x7E57  # separates the test split's random stream from other uses of split_seed


class ImageSourceConfig(DatasetConfig):
    """Options of every dataset read from the user's own images."""

    resize: tuple[Side, Side] | None = None
    """``[H, W]`` (or one number for a square) to resize every image to, bilinear with
    antialiasing; ``None``: keep the size (then every image must have the same size)."""
    grayscale: bool = Field(False, strict=True)
    """Convert to one luma channel. Otherwise image files load as RGB (as torchvision's
    ImageFolder does) and arrays keep their channels."""
    test_fraction: float = Field(0.2, gt=0, lt=1)
    """Share of each class held out as the test split, when the source has no test split of its own."""
    split_seed: Seed = 0
    """Seeds which images of each class form that test split."""

    @field_validator("resize", mode="before")
    @classmethod
    def _square(cls, value: Any) -> Any:
        return (value, value) if type(value) is int else value


def decode_image(source: Path | bytes, item: str, key: str) -> np.ndarray:
    """One encoded image (a file, or its bytes) as ``(H, W, 3)`` uint8 RGB.

    Parameters
    ----------
    source:
        The file, or the encoded bytes.
    item, key:
        What the image is (a path, a row) and the scenario key it came from, for messages.

    Raises:
        FedleakError: one line: the image cannot be read or decoded.
    """
    from PIL import Image  # only when image files are read

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            return np.array(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:  # PIL raises all of them
        raise FedleakError(f"{key}: cannot read image {item}: {first_line(error)}") from None


def stack_images(pixels: Sequence[np.ndarray], items: Sequence[str], key: str,
                 resize: tuple[int, int] | None) -> torch.Tensor:
    """Decoded ``(H, W, C)`` uint8 images as one ``(N, C, H, W)`` float32 tensor in [0, 1].

    Images of different sizes are each resized to ``resize`` first; without it they are an error.

    Raises:
        FedleakError: one line: no images, or two of different sizes (named).
    """
    if not pixels:
        raise FedleakError(f"{key}: no images")
    odd = next((i for i, array in enumerate(pixels) if array.shape != pixels[0].shape), None)
    if odd is None:
        return _unit_range(np.stack(pixels))
    if resize is None:
        sizes = ["×".join(map(str, pixels[i].shape[:2])) for i in (0, odd)]
        raise FedleakError(f"{key}: images differ in size: {items[0]} is {sizes[0]}, {items[odd]} is {sizes[1]} "
                           "(H×W); set dataset.resize = [H, W]")
    return torch.cat([resize_images(_unit_range(array[None]), resize) for array in pixels])


def _unit_range(pixels: np.ndarray) -> torch.Tensor:
    """``(N, H, W, C)`` uint8 → ``(N, C, H, W)`` float32 in [0, 1]."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def adjust(images: torch.Tensor, config: ImageSourceConfig) -> torch.Tensor:
    """``(N, C, H, W)`` images after the config's ``grayscale`` and ``resize``."""
    if config.grayscale:
        images = to_grayscale(images)
    if config.resize is not None and tuple(images.shape[-2:]) != config.resize:
        images = resize_images(images, config.resize)
    return images


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """One luma channel from 3 (RGB); one channel stays as it is.

    Raises:
        FedleakError: the images have another number of channels.
    """
    channels = images.shape[1]
    if channels == 1:
        return images
    if channels != 3:
        raise FedleakError(f"dataset.grayscale: needs RGB or one-channel images; these have {channels} channels")
    return torch.einsum("nchw,c->nhw", images, torch.tensor(LUMA)).unsqueeze(1)


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` images resized to ``size`` (bilinear, antialiased), still in [0, 1]."""
    resized = torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0)


def as_labels(values: Any, what: str) -> torch.Tensor:
    """Class labels (integers ≥ 0, one per image) as an int64 tensor.

    Whole numbers stored as floats are accepted (``1.0``); anything else is an error.

    Parameters
    ----------
    values:
        The labels as stored: an array or a list.
    what:
        Where they are, for messages (``"dataset.path: y of data.npz"``).

    Raises:
        FedleakError: one line: not one dimension, not integers, or negative.
    """
    labels = np.asarray(values)
    if labels.ndim != 1:
        raise FedleakError(f"{what}: labels have shape {labels.shape}; expected one label per image, shape (N,)")
    example = _not_an_integer(labels)
    if example is not None:
        raise FedleakError(f"{what}: labels are not integers (e.g. {example}); class labels are 0, 1, 2, …")
    if len(labels) and labels.min() < 0:
        raise FedleakError(f"{what}: negative label {labels.min()}; class labels are 0, 1, 2, …")
    return torch.from_numpy(labels.astype(np.int64))


def _not_an_integer(labels: np.ndarray) -> object | None:
    """A label that is not a whole number (or the dtype, for labels that are not numbers); ``None``: all are."""
    if labels.dtype.kind in "iu":
        return None
    if labels.dtype.kind != "f":
        return labels.dtype
    bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
    return bad[0] if len(bad) else None


def count_classes(labels: torch.Tensor, given: int | None, key: str) -> int:
    """``given``, or the largest label + 1.

    Raises:
        FedleakError: a label is ``given`` or more.
    """
    needed = int(labels.max()) + 1 if len(labels) else 1
    if given is not None and given < needed:
        raise FedleakError(f"{key}: {given}, but the data holds label {needed - 1}")
    return needed if given is None else given


def split_off_test(data: ImageDataset, fraction: float, seed: int) -> tuple[ImageDataset, ImageDataset]:
    """A stratified, seeded split into a training pool and a test split.

    From each class, ``round(fraction × its size)`` images — but never its last one, so
    every class stays in the pool — are drawn without replacement by a generator seeded
    with ``seed``; both splits keep the source's order.

    Returns:
        The training pool and the test split.

    Raises:
        FedleakError: the split would leave no test image.
    """
    labels = data.labels.numpy()
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    held_out = [rng.choice(members, min(math.floor(fraction * len(members) + 0.5), len(members) - 1), replace=False)
                for members in (np.flatnonzero(labels == label) for label in np.unique(labels))]
    test = np.zeros(len(labels), dtype=bool)
    test[np.concatenate(held_out)] = True
    if not test.any():
        raise FedleakError(f"dataset.test_fraction: {fraction} of {len(labels)} images leaves no test image "
                           "(every class keeps at least one image for training); use more images or a larger fraction")
    return data.subset(torch.from_numpy(np.flatnonzero(~test))), data.subset(torch.from_numpy(np.flatnonzero(test)))
