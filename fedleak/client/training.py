"""Local training on a client: FedSGD (one step) and FedAvg (many), plain SGD.

Plain SGD without momentum or weight decay, so that the hyperparameters the server
configured (lr, steps, batch size) fully describe the update it receives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedleak.core.updates import ClientUpdate, UpdateMetadata, Weights
from fedleak.data import ImageDataset
from fedleak.defenses.base import TrainingWrapper
from fedleak.models import ModelSpec


@dataclass(frozen=True)
class LocalTrainingReport:
    steps: int
    num_examples: int
    mean_loss: float


def train_locally(
    model: nn.Module, pool: ImageDataset, batches: Sequence[np.ndarray], lr: float,
    wrapper: TrainingWrapper | None = None,
) -> LocalTrainingReport:
    """Run one SGD step per batch of training-pool indices, in order, on ``model``'s weights.

    ``wrapper`` may replace the module and optimizer (DP-SGD); they must update
    ``model``'s own parameters.
    """
    network: nn.Module = model
    optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    if wrapper is not None:
        network, optimizer = wrapper(model, optimizer)
    network.train()
    losses = []
    for batch in batches:
        index = torch.as_tensor(batch)
        loss = F.cross_entropy(network(pool.images[index]), pool.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seen = len(np.unique(np.concatenate(batches))) if batches else 0
    return LocalTrainingReport(len(batches), seen, float(np.mean(losses)) if losses else 0.0)


def offline_update(
    spec: ModelSpec, sent: Weights, pool: ImageDataset, batches: Sequence[np.ndarray], lr: float,
    partition_id: int = 0, server_round: int = 1,
) -> ClientUpdate:
    """Train from ``sent`` as a client would and capture the update, without a federation.

    For tests and benchmarks that attack updates directly; one step is FedSGD.
    """
    model = spec.with_weights(sent)
    report = train_locally(model, pool, batches, lr)
    metadata = UpdateMetadata("fedsgd" if report.steps == 1 else "fedavg", lr, report.steps,
                              len(batches[0]), report.num_examples)
    return ClientUpdate("offline", server_round, 0, partition_id, dict(sent), model.state_dict(), metadata)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageDataset) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data``."""
    model.eval()
    logits = model(data.images)
    loss = F.cross_entropy(logits, data.labels).item()
    accuracy = (logits.argmax(1) == data.labels).float().mean().item()
    return accuracy, loss
