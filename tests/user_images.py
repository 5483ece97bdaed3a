"""Small colour images for the user-data tests, made in the test's temporary folder.

Random crops of the two photos scikit-learn ships (``sklearn/datasets/images``), read with
PIL directly (importing scikit-learn takes seconds); nothing is committed or downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images"


def photo_crops(count: int, size: int = 32, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` crops as ``(N, size, size, 3)`` uint8 and their labels (``classes`` of them, in turn).

    Class k crops photo k % 2 at a scale of its own, so the classes differ a little.
    """
    rng = np.random.default_rng(seed)
    photos = [Image.open(PHOTOS / name).convert("RGB") for name in ("china.jpg", "flower.jpg")]
    labels = np.arange(count) % classes
    crops = []
    for label in labels:
        photo = photos[label % 2]
        side = 48 + 24 * (label // 2)
        left, top = rng.integers(0, photo.width - side), rng.integers(0, photo.height - side)
        crop = photo.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
        crops.append(np.asarray(crop))
    return np.stack(crops), labels


def write_image_folder(root: Path, images: np.ndarray, labels: np.ndarray, suffix: str = ".png") -> Path:
    """``root/class_<k>/<i>.png``: one folder per class, ImageFolder's layout."""
    for index, (pixels, label) in enumerate(zip(images, labels)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index:03d}{suffix}")
    return root
