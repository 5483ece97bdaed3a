"""What the optimisation attacks share: how labels are obtained, restarts, budgets.

Every optimisation attack keeps the restart with the lowest final objective (Geiping
et al. 2020 score their restarts this way). An :class:`OptimizationAttack` (GRNN) runs
one *attempt* per restart, in turn, under the attack's time budget; dummy-data attacks
run theirs side by side (:mod:`fedleak.attacks.stacked`). The returned
:class:`~fedleak.attacks.base.Reconstruction` says how far the attack got.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from fedleak.attacks.base import Attack, Budget, Deadline, Reconstruction
from fedleak.attacks.devices import DeviceConfig
from fedleak.attacks.gradients import observed_gradient
from fedleak.attacks.labels import infer_labels
from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.models import ImageClassifier

LabelSource = Literal["optimize", "infer"]


class OptimizationConfig(DeviceConfig):
    """Options of every optimisation attack (each sets its own defaults), ``device`` among them."""

    iterations: int = Field(1000, ge=1)
    """Optimiser steps per restart."""
    restarts: int = Field(1, ge=1)
    """Random starts; the one with the lowest final objective is returned."""
    labels: LabelSource = "infer"
    """Unless the threat model grants the true labels: ``infer`` fixes them from the
    output layer's gradient (:mod:`fedleak.attacks.labels`), ``optimize`` learns soft
    labels jointly with the images."""


@dataclass
class Attempt:
    """One restart's result: images in [0, 1], hard labels, final objective, steps taken."""

    images: torch.Tensor
    labels: torch.Tensor
    loss: float
    iterations: int


def fixed_labels(config: OptimizationConfig, update: ClientUpdate, model: ImageClassifier) -> torch.Tensor | None:
    """The labels an attempt keeps fixed, or ``None`` when it must optimise them."""
    if update.known_labels is not None:
        return update.known_labels
    if config.labels == "infer":
        return infer_labels(update, model, config.seed)
    return None


def best_of_restarts(
    config: OptimizationConfig, deadline: Deadline, attempt: Callable[[torch.Generator], Attempt]
) -> Reconstruction:
    """Run ``attempt`` once per restart (at least once, then while time is left); keep the best.

    One generator seeded with ``config.seed`` feeds every restart in turn, so a seed
    fixes the whole attack.
    """
    generator = torch.Generator().manual_seed(config.seed)
    attempts = [attempt(generator)]
    while len(attempts) < config.restarts and not deadline.expired():
        attempts.append(attempt(generator))
    best = min(attempts, key=lambda a: a.loss if math.isfinite(a.loss) else math.inf)
    return Reconstruction(
        images=best.images.detach().cpu(),
        labels=best.labels.cpu(),
        seconds=deadline.elapsed,
        extras={
            "iterations": best.iterations, "iterations_planned": config.iterations,
            "restarts": len(attempts), "restarts_planned": config.restarts,
            "final_loss": best.loss, "restart_losses": [a.loss for a in attempts],
            "stopped_by_budget": deadline.expired(),
        },
    )


@dataclass(frozen=True)
class InversionProblem:
    """What every attempt of one attack starts from."""

    model: ImageClassifier
    """The :meth:`~fedleak.models.ImageClassifier.training_simulation` of the global model the server sent."""
    target: list[torch.Tensor]
    """The observed quantity to match, ordered like ``model.parameters()``."""
    labels: torch.Tensor | None
    """Fixed labels, or ``None`` when the attempt optimises them."""
    training: UpdateMetadata
    deadline: Deadline

    @property
    def size(self) -> int:
        """Samples to reconstruct: the distinct examples the client declared."""
        return self.training.num_examples

    @property
    def device(self) -> torch.device:
        """Where the attempts compute: where the model and the target are."""
        return self.target[0].device


class OptimizationAttack(Attack):
    """An attack that reconstructs by optimisation: one :meth:`attempt` per restart."""

    Config = OptimizationConfig
    config: OptimizationConfig

    def observed(self, update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
        """What the attack matches; the update read as one gradient unless overridden."""
        return observed_gradient(update, model)

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        device = self.config.torch_device()
        labels = fixed_labels(self.config, update, model)
        problem = InversionProblem(
            model.training_simulation().to(device),  # a copy: the caller's model stays where it is
            [target.to(device) for target in self.observed(update, model)],
            None if labels is None else labels.to(device),
            update.metadata,
            budget.deadline(),
        )
        return best_of_restarts(self.config, problem.deadline, lambda generator: self.attempt(problem, generator))

    @abstractmethod
    def attempt(self, problem: InversionProblem, generator: torch.Generator) -> Attempt:
        """One restart from a random start drawn from ``generator``; stops at the deadline."""
