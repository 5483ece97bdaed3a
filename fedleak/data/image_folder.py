"""``image-folder``: your own images, one subfolder per class.

The layout and its reading follow torchvision's ``datasets.ImageFolder``: the classes are
the subfolders of ``root``, sorted by name (label 0 is the first); a class's images are the
files under its folder (subfolders included, symbolic links followed) whose name ends in
one of ``extensions`` (case-insensitive), in sorted order; every image is read as RGB
(or one luma channel with ``grayscale``). Other files are ignored. PIL is imported only
when the images are read, never to validate a scenario.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from pydantic import field_validator

from fedleak.core.errors import FedleakError
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset
from fedleak.data.images import ImageSourceConfig, adjust, decode_image, split_off_test, stack_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""torchvision's ``IMG_EXTENSIONS``."""

_KEY = "dataset.root"


class ImageFolderConfig(ImageSourceConfig):
    name: Literal["image-folder"] = "image-folder"
    root: Path
    """The folder whose subfolders are the classes (relative paths: from the working directory)."""
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    """File name endings that are images (``".png"``); other files are ignored."""

    @field_validator("root")
    @classmethod
    def _is_a_folder(cls, root: Path) -> Path:
        root = root.expanduser().absolute()
        if not root.is_dir():
            raise ValueError(f"{root} {'is not a folder' if root.exists() else 'does not exist'}")
        return root

    @field_validator("extensions")
    @classmethod
    def _dotted(cls, extensions: tuple[str, ...]) -> tuple[str, ...]:
        if not extensions or not all(ending.startswith(".") and len(ending) > 1 for ending in extensions):
            raise ValueError(f"expected file endings such as \".png\", got {list(extensions)}")
        return tuple(ending.lower() for ending in extensions)

    @property
    def source(self) -> str:
        return str(self.root)


@DATASETS.register("image-folder")
class ImageFolder:
    Config = ImageFolderConfig

    @staticmethod
    def load(config: ImageFolderConfig) -> DatasetSplits:
        classes = class_folders(config.root)
        files = [(path, label) for label, folder in enumerate(classes) for path in image_files(folder, config)]
        items = [str(path) for path, _ in files]
        images = stack_images([decode_image(path, str(path), _KEY) for path, _ in files], items, _KEY, config.resize)
        data = ImageDataset(adjust(images, config), torch.tensor([label for _, label in files], dtype=torch.int64))
        train, test = split_off_test(data, config.test_fraction, config.split_seed)
        return DatasetSplits(name=config.name, train=train, test=test, num_classes=len(classes))


def class_folders(root: Path) -> list[Path]:
    """The subfolders of ``root``, sorted by name.

    Raises:
        FedleakError: there are none.
    """
    classes = sorted((entry for entry in root.iterdir() if entry.is_dir()), key=lambda entry: entry.name)
    if not classes:
        raise FedleakError(f"{_KEY}: {root} has no class subfolders; put each class's images in a folder of "
                           f"its own: {root}/<class>/<image>.png")
    return classes


def image_files(folder: Path, config: ImageFolderConfig) -> list[Path]:
    """The images of one class folder, in ImageFolder's order.

    Raises:
        FedleakError: the folder holds no file with one of the extensions.
    """
    files = [Path(parent, name) for parent, _, names in sorted(os.walk(folder, followlinks=True))
             for name in sorted(names) if name.lower().endswith(config.extensions)]
    if not files:
        raise FedleakError(f"{_KEY}: class folder {folder} holds no images (files ending in "
                           f"{', '.join(config.extensions)})")
    return files
