"""The attack interface and registry.

An attack turns one :class:`~fedleak.updates.ClientUpdate` plus the architecture
(carrying the global weights the server sent) into a :class:`Reconstruction`. Each
attack is one module that registers its class by name; its ``Config`` (a pydantic
model) holds every knob and is validated from the scenario.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch
from pydantic import Field

from fedleak.config import Strict
from fedleak.models import ImageClassifier
from fedleak.registry import Registry
from fedleak.updates import ClientUpdate


class Requirement(StrEnum):
    """What an attack reads from the capture (declarative: it documents the threat model; nothing enforces it)."""

    GRADIENT = "gradient"
    """Reads the update as one gradient (exact for FedSGD, the pseudo-gradient −Δ/(lr·steps) for FedAvg)."""
    TRAINING = "training"
    """Reads Δ together with the local training the server configured (lr, steps, batch size)."""
    TRAINED = "trained"
    """Reads the returned weights as a model trained (to convergence) on the client's data."""
    RANDOM_QUERY = "random-query"
    """Needs the gradient at parameters a malicious server drew at random (``threat.random_query``)."""


class AttackNotApplicable(Exception):
    """The attack cannot run on this model or update (stored as the failure reason)."""


class AttackConfig(Strict):
    """Options every attack has."""

    seed: int = 0
    time_budget_s: float | None = Field(None, gt=0)
    """Stop after this many seconds and return the best so far (``None``: no limit)."""


@dataclass(frozen=True)
class Budget:
    """How long an attack may run; ``deadline()`` starts its clock."""

    seconds: float | None = None

    def deadline(self) -> Deadline:
        return Deadline(self.seconds)


class Deadline:
    def __init__(self, seconds: float | None) -> None:
        self.started = time.perf_counter()
        self.seconds = seconds

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def expired(self) -> bool:
        return self.seconds is not None and self.elapsed >= self.seconds


@dataclass
class Reconstruction:
    """Recovered images ``(B, C, H, W)`` in [0, 1], labels if recovered, and how it went."""

    images: torch.Tensor
    labels: torch.Tensor | None
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)


class Attack(ABC):
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    requires: ClassVar[frozenset[Requirement]] = frozenset({Requirement.GRADIENT})

    def __init__(self, config: AttackConfig) -> None:
        self.config = config

    @abstractmethod
    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        """Reconstruct the client's training images from ``update``.

        ``model`` holds the global weights the server sent. Raises
        :class:`AttackNotApplicable` when the model or update does not fit the attack.
        """

    @classmethod
    def batch_key(cls, update: ClientUpdate) -> Hashable | None:
        """Updates with one equal, non-``None`` key may be attacked together by
        :meth:`run_batch`; ``None`` (the default): this attack runs one update at a time."""
        return None

    def run_batch(
        self, updates: Sequence[ClientUpdate], model: ImageClassifier, budget: Budget
    ) -> list[Reconstruction]:
        """Reconstruct every update of one batch key, each as :meth:`run` would.

        The default runs them one by one; a vectorised attack overrides it. If it raises,
        the caller re-runs the updates in halves, down to one at a time, so each failure
        stays with its update.
        """
        return [self.run(update, model, budget) for update in updates]


ATTACKS: Registry[type[Attack]] = Registry("attack")
