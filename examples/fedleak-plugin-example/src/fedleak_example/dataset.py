"""``stripes``: generated colour images (class = stripe direction and colour), no files needed."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from fedleak.core.config import DatasetConfig
from fedleak.data import DATASETS, DatasetSplits, ImageDataset

_CLASSES = 4  # horizontal red, horizontal green, vertical blue, vertical yellow


class StripesConfig(DatasetConfig):
    name: Literal["stripes"] = "stripes"
    images: int = Field(64, ge=8, le=100_000)
    size: int = Field(16, ge=4, le=256)
    seed: int = Field(0, ge=0)


@DATASETS.register("stripes")
class Stripes:
    """A registered dataset: a ``Config`` and ``load(config)`` → training and test splits."""

    Config = StripesConfig

    @staticmethod
    def load(config: StripesConfig) -> DatasetSplits:
        generator = torch.Generator().manual_seed(config.seed)
        labels = torch.arange(config.images) % _CLASSES
        images = torch.stack([_stripes(int(label), config.size, generator) for label in labels])
        cut = config.images * 3 // 4
        data = ImageDataset(images, labels)
        return DatasetSplits(name=config.name, train=data.subset(slice(cut)), test=data.subset(slice(cut, None)),
                             num_classes=_CLASSES)


def _stripes(label: int, size: int, generator: torch.Generator) -> torch.Tensor:
    period = int(torch.randint(2, 5, (), generator=generator))
    wave = (torch.arange(size) // period % 2).float()
    pattern = wave.view(-1, 1).expand(size, size) if label < 2 else wave.view(1, -1).expand(size, size)
    colour = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]][label], dtype=torch.float32)
    noise = 0.1 * torch.rand(3, size, size, generator=generator)
    return (colour.view(3, 1, 1) * pattern * 0.9 + noise).clamp(0, 1)
