"""The app's own model, data and training: nothing here knows fedleak."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, Dataset

SETTINGS = {"num-server-rounds": 2, "lr": 0.1, "batch-size": 1, "local-steps": 1, "lab": False, "store": "runs"}
"""The run config's defaults (pyproject.toml's; ``run_simulation`` passes no run config)."""

MEAN, STD = (0.3,), (0.4,)
"""This app's normalisation of its [0, 1] images (its own choice, not the data's statistics)."""


def setting(run_config: Mapping[str, Any], key: str) -> Any:
    return run_config.get(key, SETTINGS[key])


class Net(nn.Module):
    """A small CNN for 8×8 digits, with its own names for its layers."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.Sigmoid()
        self.head = nn.Linear(8 * 8 * 8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.stem(x)).flatten(1))


class Digits(Dataset):
    """One client's share of scikit-learn's digits, normalised as this app does."""

    def __init__(self, partition_id: int, num_partitions: int) -> None:
        digits = load_digits()
        index = np.arange(len(digits.target))[partition_id::num_partitions]
        self.images = torch.tensor(digits.images[index] / 16.0, dtype=torch.float32).unsqueeze(1)
        self.labels = torch.tensor(digits.target[index], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"img": (self.images[i] - MEAN[0]) / STD[0], "label": self.labels[i]}


def load_data(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def train(net: Net, loader: DataLoader, steps: int, lr: float) -> tuple[float, int]:
    """``steps`` SGD steps; the mean loss and how many examples were trained on."""
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    losses, examples = [], 0
    batches = iter(loader)
    for _ in range(steps):
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(batch["img"]), batch["label"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        examples += len(batch["label"])
    return float(np.mean(losses)), min(examples, len(loader.dataset))
