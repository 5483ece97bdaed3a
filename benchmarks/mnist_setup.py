"""What the MNIST benchmarks share: where the data lies, models on it, the machine line."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any, Literal

import torch

from fedleak.data import dataset_config, load_dataset
from fedleak.data.datasets import DatasetSplits
from fedleak.models import ModelSpec
from fedleak.models.base import ModelConfig
from fedleak.models.lenet import LeNetConfig

MNIST_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
"""The real MNIST t10k split beside the checkout (never downloaded)."""


def mnist_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with ``--data-root``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=MNIST_ROOT)
    return parser


def machine() -> str:
    """The line each benchmark prints first: CPU, torch build, threads."""
    return (f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def append_jsonl(path: Path | None, row: dict[str, Any]) -> None:
    """Append ``row`` to ``path`` as one JSON line, at once (a run cut short keeps what it measured);
    nothing without a path."""
    if path is not None:
        with path.open("a") as sink:
            sink.write(json.dumps(row, default=str) + "\n")


def load_mnist(data_root: Path) -> DatasetSplits:
    return load_dataset(dataset_config("mnist", data_root=data_root.resolve()))


def mnist_spec(splits: DatasetSplits, name: str, config: ModelConfig) -> ModelSpec:
    """Model ``name`` on MNIST, normalised per channel (fedleak's default)."""
    return ModelSpec(name, config, splits.image_shape, splits.num_classes, *splits.channel_stats)


def lenet_on_mnist(data_root: Path, init: Literal["uniform", "default"]) -> tuple[DatasetSplits, ModelSpec]:
    """MNIST and DLG's sigmoid LeNet, its weights ~ U(−0.5, 0.5) (``uniform``) or PyTorch's default."""
    splits = load_mnist(data_root)
    return splits, mnist_spec(splits, "lenet", LeNetConfig(init=init, init_bound=0.5))
