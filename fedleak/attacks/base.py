"""The attack interface and registry.

An attack turns one :class:`~fedleak.core.updates.ClientUpdate` plus the architecture
(carrying the global weights the server sent) into a :class:`Reconstruction`. Each
attack is one module that registers its class by name; its ``Config`` (a pydantic
model) holds every knob and is validated from the scenario.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch
from pydantic import Field

from fedleak.core.config import Seed, Strict
from fedleak.core.registry import Registry
from fedleak.core.updates import ClientUpdate
from fedleak.models import ImageClassifier


class Requirement(StrEnum):
    """What an attack reads from the capture. The adversary checks each against an update
    before making the job (:meth:`Attack.unmet_requirement`); an update that cannot give
    it is stored "not applicable" and never attacked."""

    GRADIENT = "gradient"
    """Reads the update as one gradient (exact for FedSGD, the pseudo-gradient −Δ/(lr·steps) for FedAvg)."""
    TRAINING = "training"
    """Reads Δ together with the local training the server configured (lr, steps, batch size)."""
    TRAINED = "trained"
    """Reads the returned weights as a model trained (to convergence) on the client's data."""
    RANDOM_QUERY = "random-query"
    """Needs the gradient at parameters a malicious server drew at random (the ``random-query`` crafting)."""

    def unmet_by(self, update: ClientUpdate) -> str | None:
        """Why ``update`` cannot give what this requirement reads; ``None`` when it can.

        Every captured update carries a gradient, Δ with its declared training, and the
        returned weights; only a random query depends on the round."""
        if self is Requirement.RANDOM_QUERY and update.crafted != "random-query":
            return 'needs an update from a random-parameter query round ([crafting] name = "random-query")'
        return None


class AttackNotApplicable(Exception):
    """The attack cannot run on this model or update (stored as the failure reason)."""


class AttackConfig(Strict):
    """Options every attack has."""

    seed: Seed = 0
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

    def remaining(self) -> Budget:
        """What is left of the budget (none left: a zero budget; no limit stays no limit)."""
        return Budget(None if self.seconds is None else max(0.0, self.seconds - self.elapsed))


@dataclass
class Reconstruction:
    """Recovered images ``(B, C, H, W)`` in [0, 1], labels if recovered, and how it went."""

    images: torch.Tensor
    labels: torch.Tensor | None
    seconds: float
    extras: dict[str, Any] = field(default_factory=dict)

    def violation(self, image_shape: tuple[int, int, int], num_classes: int) -> str | None:
        """How this breaks the contract every attack keeps, or ``None``: at least one image of
        ``image_shape``, finite values in [0, 1], one integer label in ``[0, num_classes)`` per
        image (or none), JSON-serialisable extras."""
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not len(images) \
                or tuple(images.shape[1:]) != tuple(image_shape):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            return f"images of shape {shape}, expected (B ≥ 1, {', '.join(map(str, image_shape))})"
        if not images.is_floating_point() or not bool(torch.isfinite(images).all()):
            return "images are not finite floats"
        if float(images.min()) < 0 or float(images.max()) > 1:
            return f"image values in [{float(images.min()):.3g}, {float(images.max()):.3g}], expected [0, 1]"
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (len(images),) \
                    or labels.is_floating_point() or labels.is_complex():
                return f"labels must be {len(images)} integers, one per image"
            if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
                return f"labels outside 0..{num_classes - 1}"
        try:
            json.dumps(self.extras)
        except (TypeError, ValueError) as error:
            return f"extras are not JSON-serialisable: {error}"
        return None


class Attack(ABC):
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    requires: ClassVar[frozenset[Requirement]] = frozenset({Requirement.GRADIENT})

    def __init__(self, config: AttackConfig) -> None:
        self.config = config

    @classmethod
    def unmet_requirement(cls, update: ClientUpdate) -> str | None:
        """Why this attack cannot read ``update`` (see :class:`Requirement`); ``None``: it can."""
        return next((reason for need in sorted(cls.requires) if (reason := need.unmet_by(update))), None)

    @abstractmethod
    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        """Reconstruct the client's training images from ``update``.

        ``model`` holds the global weights the server sent; the attack must not change it
        (its weights, device or mode). Raises :class:`AttackNotApplicable` when the model
        or update does not fit the attack.
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


def preload_in_background() -> None:
    """Import, in a daemon thread, what the first ``torch.func`` transform imports (``torch._dynamo``:
    1.1 s on 2 cores, on the first attack's path otherwise). A process that will run attacks calls this
    when it knows it will, so that cost overlaps its wait for the first captured round."""
    threading.Thread(target=importlib.import_module, args=("torch._dynamo",), name="fedleak-preload",
                     daemon=True).start()
