"""What the server captures from one client in one round."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:  # the types only: reading a run's results (fedleak results, compare) needs no torch
    import torch

Weights: TypeAlias = "dict[str, torch.Tensor]"
"""A model's parameters by ``state_dict`` name."""


@dataclass(frozen=True)
class UpdateMetadata:
    """The training hyperparameters the server configured and the reply declared."""

    algorithm: str
    lr: float
    local_steps: int
    batch_size: int
    num_examples: int


@dataclass(frozen=True)
class ReportedSamples:
    """The samples a lab client says it trained on this round: images in [0, 1] (N, C, H, W)
    and their labels (N,), as its data loader produced them (augmented, if it augments)."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class ClientUpdate:
    """One client's reply as the server saw it (after any client-side defense).

    ``known_labels`` is set only when the scenario's threat model grants the
    ``known_labels`` capability; it is never read from a Flower message.

    An *aggregate* (what SecAgg+ lets the server unmask) has ``partition_id`` −1 and
    lists the partitions it sums in ``aggregate_of``.

    ``crafted`` names the crafting a malicious server sent instead of the global model this
    round (:mod:`fedleak.crafting`; ``global_weights`` are then the crafted ones); ``None``:
    the global model was sent.

    From an attached app (:func:`fedleak.attach`): ``warnings`` says what the reply did not
    declare and where the server took it from instead; ``reported`` holds the samples a lab
    client sent on fedleak's side channel (:func:`fedleak.client_mod`), the ground truth of
    its scores. The adversary hands attacks the update without them.
    """

    run_id: str
    server_round: int
    node_id: int
    partition_id: int
    global_weights: Weights
    client_weights: Weights
    metadata: UpdateMetadata
    known_labels: torch.Tensor | None = None
    aggregate_of: tuple[int, ...] = ()
    crafted: str | None = None
    warnings: tuple[str, ...] = ()
    reported: ReportedSamples | None = None

    @property
    def partitions(self) -> tuple[int, ...]:
        """The partitions whose training data this update carries."""
        return self.aggregate_of or (self.partition_id,)

    @property
    def delta(self) -> Weights:
        """Δ = w_returned − w_sent."""
        return {k: self.client_weights[k] - w for k, w in self.global_weights.items()}

    def pseudo_gradient(self) -> Weights:
        """The mean gradient of the local steps: g = −Δ / (lr · steps).

        Exact for FedSGD (one plain SGD step); for FedAvg it is the usual first-order
        treatment of a multi-step update as one gradient.
        """
        scale = -1.0 / (self.metadata.lr * self.metadata.local_steps)
        return {k: d * scale for k, d in self.delta.items()}

    def norm(self) -> float:
        """The update's L2 norm, the same bits in every process: NumPy's pairwise sum, not torch's
        reduction, whose split over threads (and so its last digit) depends on the thread count."""
        squares = (np.square(d.detach().cpu().numpy().astype(np.float64)).sum() for d in self.delta.values())
        return math.sqrt(math.fsum(squares))
