"""What the MNIST benchmarks share: where the data lies, and DLG's LeNet on it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from fedleak.config import DatasetConfig
from fedleak.data import load_dataset
from fedleak.data.datasets import DatasetSplits
from fedleak.models import ModelSpec
from fedleak.models.lenet import LeNetConfig

MNIST_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
"""The real MNIST t10k split beside the checkout (never downloaded)."""


def mnist_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--data-root``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=MNIST_ROOT)
    return parser


def lenet_on_mnist(data_root: Path, init: Literal["uniform", "default"]) -> tuple[DatasetSplits, ModelSpec]:
    """MNIST and DLG's sigmoid LeNet, its weights ~ U(−0.5, 0.5) (``uniform``) or PyTorch's default."""
    splits = load_dataset(DatasetConfig(name="mnist", data_root=data_root.resolve()))
    spec = ModelSpec("lenet", LeNetConfig(init=init, init_bound=0.5), splits.image_shape,
                     splits.num_classes, *splits.channel_stats)
    return splits, spec
