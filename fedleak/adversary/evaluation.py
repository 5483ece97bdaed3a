"""The evaluator: score a reconstruction against the samples the client really used.

The ground truth is re-derived from the data plan — the same pure function the
client sampled its batches from — never taken from a Flower message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedleak.adversary.metrics import MatchedScores, score
from fedleak.attacks import AttackStatus, Reconstruction
from fedleak.core.config import TrainingConfig
from fedleak.core.updates import ClientUpdate
from fedleak.data import DataPlan, ImageDataset


@dataclass
class AttackResult:
    """One attack on one captured update, scored (or not, with its reason)."""

    run_id: str
    server_round: int
    node_id: int
    partition_id: int
    attack: str
    status: AttackStatus
    seconds: float
    """This attack's share of the time of the batch it ran in (the batch's wall time / its size)."""
    metrics: dict[str, float | None] = field(default_factory=dict)
    num_reconstructed: int = 0
    num_ground_truth: int = 0
    error: str | None = None
    threat: dict[str, Any] = field(default_factory=dict)
    defenses: list[dict[str, Any]] = field(default_factory=list)
    epsilon: float | None = None
    """ε of the attacked update against the server (None: no accounted guarantee)."""
    model_epsilon: float | None = None
    """ε of the released global model up to this round."""
    extras: dict[str, Any] = field(default_factory=dict)
    random_query: bool = False
    """The attacked update answered a random-parameter query (a malicious server's)."""
    batch_seconds: float | None = None
    """Wall time of the whole batch this attack ran in (``None``: it did not run)."""
    batch_size: int = 1
    """Attacks solved together in that batch."""


class Evaluator:
    """Knows the training pool and the data plan; scores reconstructions."""

    def __init__(self, pool: ImageDataset, plan: DataPlan, training: TrainingConfig) -> None:
        self.pool = pool
        self.plan = plan
        self.training = training

    def ground_truth(self, partitions: tuple[int, ...], server_round: int) -> ImageDataset:
        """The distinct samples ``partitions`` trained on in ``server_round`` (in client order)."""
        index = np.concatenate([self.plan.samples(p, server_round, self.training) for p in partitions])
        return self.pool.subset(torch.as_tensor(index))

    def score(self, update: ClientUpdate, reconstruction: Reconstruction) -> tuple[MatchedScores, ImageDataset]:
        truth = self.ground_truth(update.partitions, update.server_round)
        scores = score(reconstruction.images, truth.images, reconstruction.labels, truth.labels)
        return scores, truth
