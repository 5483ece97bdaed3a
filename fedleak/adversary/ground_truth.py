"""Ground truth: the samples a client really used, that reconstructions are scored against.

Two sources, one interface (:class:`GroundTruth`):

* :class:`PlanTruth` — fedleak's own runs. The ground truth is re-derived from the data
  plan, the same pure function the client sampled its batches from; never taken from a
  Flower message.
* :class:`ReportedTruth` — an attached app (:func:`fedleak.attach`). The server knows no
  data plan; a lab client may report the samples it trained on through fedleak's side
  channel (:func:`fedleak.client_mod`). Updates without them have no ground truth: their
  reconstructions are stored ``unscored``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from fedleak.adversary.metrics import MatchedScores, score
from fedleak.attacks import Reconstruction
from fedleak.core.config import TrainingConfig
from fedleak.core.updates import ClientUpdate
from fedleak.data import DataPlan, ImageDataset


class GroundTruth(ABC):
    """What the server can score an update's reconstruction against."""

    checks_updates = False
    """Whether updates are sanity-checked against their samples before they are attacked
    (:mod:`fedleak.adversary.sanity`): where the samples came from the client, not from the plan."""

    prior: torch.Tensor | None = None
    """The trivial guess every score is set against (the training pool's mean image;
    :mod:`fedleak.adversary.metrics`); ``None``: no pool known, no reference scores."""

    @abstractmethod
    def samples(self, update: ClientUpdate) -> ImageDataset | None:
        """The distinct samples ``update`` was trained on (``None``: unknown)."""

    def remember(self, update: ClientUpdate) -> None:  # noqa: B027 - a hook: most ground truths ignore it
        """Keep what ``update`` itself says of its samples, for scoring its attacks (nothing, here)."""

    def batch_digest(self, update: ClientUpdate) -> str | None:
        """The digest of the batches ``update`` trained on (stored with it; ``None``: unknown)."""
        return None

    def shard_size(self, partition_id: int) -> int | None:
        """How many samples the client holds (the privacy ledger's sampling rate; ``None``: unknown)."""
        return None

    def score(self, update: ClientUpdate, reconstruction: Reconstruction
              ) -> tuple[MatchedScores, ImageDataset] | None:
        """The matched scores and the ground truth they were computed on (``None``: no ground truth)."""
        truth = self.samples(update)
        if truth is None:
            return None
        scores = score(reconstruction.images, truth.images, reconstruction.labels, truth.labels, prior=self.prior)
        return scores, truth


class PlanTruth(GroundTruth):
    """Knows the training pool and the data plan of a fedleak run."""

    def __init__(self, pool: ImageDataset, plan: DataPlan, training: TrainingConfig) -> None:
        self.pool = pool
        self.plan = plan
        self.training = training
        self.prior = pool.images.mean(dim=0)

    def ground_truth(self, partitions: tuple[int, ...], server_round: int) -> ImageDataset:
        """The distinct samples ``partitions`` trained on in ``server_round`` (in client order)."""
        index = np.concatenate([self.plan.samples(p, server_round, self.training) for p in partitions])
        return self.pool.subset(torch.as_tensor(index))

    def planned(self, partitions: tuple[int, ...]) -> bool:
        """Whether the plan holds these partitions (a stock client in fedleak's run is numbered
        after them: :class:`~fedleak.federation.replies.ServerReplies`; its data is unknown)."""
        return all(0 <= p < self.plan.num_clients for p in partitions)

    def samples(self, update: ClientUpdate) -> ImageDataset | None:
        return self.ground_truth(update.partitions, update.server_round) if self.planned(update.partitions) else None

    def batch_digest(self, update: ClientUpdate) -> str | None:
        if not self.planned(update.partitions):
            return None
        return self.plan.batch_digest(update.partitions, update.server_round, self.training)

    def shard_size(self, partition_id: int) -> int | None:
        return len(self.plan.shard(partition_id)) if self.planned((partition_id,)) else None


class ReportedTruth(GroundTruth):
    """The samples lab clients reported with their updates (kept until the run ends)."""

    checks_updates = True

    def __init__(self) -> None:
        self._reported: dict[tuple[int, int], ImageDataset] = {}

    def remember(self, update: ClientUpdate) -> None:
        if update.reported is not None:
            self._reported[(update.server_round, update.node_id)] = ImageDataset(update.reported.images,
                                                                                  update.reported.labels)

    def samples(self, update: ClientUpdate) -> ImageDataset | None:
        return self._reported.get((update.server_round, update.node_id))
