"""The evaluator: score a reconstruction against the samples the client really used.

The ground truth is re-derived from the data plan — the same pure function the
client sampled its batches from — never taken from a Flower message.
"""

from __future__ import annotations

import numpy as np
import torch

from fedleak.adversary.metrics import MatchedScores, score
from fedleak.attacks import Reconstruction
from fedleak.core.config import TrainingConfig
from fedleak.core.updates import ClientUpdate
from fedleak.data import DataPlan, ImageDataset


class Evaluator:
    """Knows the training pool and the data plan; scores reconstructions."""

    def __init__(self, pool: ImageDataset, plan: DataPlan, training: TrainingConfig) -> None:
        self.pool = pool
        self.plan = plan
        self.training = training
        self.mean_image = pool.images.mean(dim=0)
        """The trivial guess every score is set against (:mod:`fedleak.adversary.metrics`)."""

    def ground_truth(self, partitions: tuple[int, ...], server_round: int) -> ImageDataset:
        """The distinct samples ``partitions`` trained on in ``server_round`` (in client order)."""
        index = np.concatenate([self.plan.samples(p, server_round, self.training) for p in partitions])
        return self.pool.subset(torch.as_tensor(index))

    def batch_digest(self, partitions: tuple[int, ...], server_round: int) -> str:
        """The digest of the batches ``partitions`` trained on in ``server_round`` (stored with each update)."""
        return self.plan.batch_digest(partitions, server_round, self.training)

    def score(self, update: ClientUpdate, reconstruction: Reconstruction) -> tuple[MatchedScores, ImageDataset]:
        truth = self.ground_truth(update.partitions, update.server_round)
        scores = score(reconstruction.images, truth.images, reconstruction.labels, truth.labels,
                       prior=self.mean_image)
        return scores, truth
