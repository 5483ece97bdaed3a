"""Inverting Gradients (Geiping, Bauermeister, Dröge & Moeller, NeurIPS 2020).

Find images whose simulated update points the same way as the observed one, with a
total-variation prior (eq. 4):

    min_{x ∈ [0,1]ⁿ}  1 − cos(Δ(x), Δ_observed) + α_TV · TV(x)

optimised with Adam on the *signed* gradient of x, the box constraint enforced by
clamping after every step, and the step size divided by 10 at 3/8, 5/8 and 7/8 of
the iterations. Several restarts are scored by their final objective.

Δ(x) is, for a FedAvg update, the client's local training unrolled on x (§5: lr,
steps and batch size are what the server configured) — ``fedavg = "unroll"``. With
``fedavg = "pseudo-gradient"`` it is one gradient step on the whole batch, i.e. the
update is treated as the gradient −Δ/(lr·steps). Both coincide for FedSGD, where the
cosine makes −lr·∇ and ∇ the same target.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from fedleak.attacks.base import ATTACKS, Attack, Budget, Deadline, Reconstruction, Requirement
from fedleak.attacks.gradients import observed_delta, simulated_update
from fedleak.attacks.objectives import cosine_distance, total_variation
from fedleak.attacks.optimization import Attempt, DummyBatch, OptimizationConfig, best_of_restarts, fixed_labels
from fedleak.models import ImageClassifier
from fedleak.updates import ClientUpdate, UpdateMetadata

MILESTONES = (3 / 8, 5 / 8, 7 / 8)
"""Fractions of the iterations where the step size drops tenfold (Geiping et al.'s schedule)."""


class InvertingConfig(OptimizationConfig):
    iterations: int = Field(4800, ge=1)
    """4800 Adam steps: the paper's CIFAR-10 budget (24 000 on ImageNet)."""
    lr: float = Field(0.1, gt=0)
    tv_weight: float = Field(1e-4, ge=0)
    fedavg: Literal["unroll", "pseudo-gradient"] = "unroll"
    """How a multi-step update is modelled: unrolled local training, or one gradient."""


@ATTACKS.register("inverting")
class InvertingGradients(Attack):
    Config = InvertingConfig
    config: InvertingConfig
    requires = frozenset({Requirement.TRAINING})

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        target = observed_delta(update, model)
        labels = fixed_labels(self.config, update, model)
        size = update.metadata.num_examples
        return best_of_restarts(
            self.config, deadline,
            lambda generator: self._attempt(
                model, update.metadata, target, DummyBatch(size, model, labels, generator), deadline),
        )

    def _objective(
        self, model: ImageClassifier, training: UpdateMetadata, target: list[torch.Tensor], dummy: DummyBatch
    ) -> torch.Tensor:
        if self.config.fedavg == "unroll":
            lr, steps, batch_size = training.lr, training.local_steps, training.batch_size
        else:
            lr, steps, batch_size = training.lr * training.local_steps, 1, len(dummy.images)
        update = simulated_update(model, dummy.images, dummy.targets(), lr, steps, batch_size)
        return cosine_distance(update, target) + self.config.tv_weight * total_variation(dummy.images)

    def _attempt(
        self, model: ImageClassifier, training: UpdateMetadata, target: list[torch.Tensor], dummy: DummyBatch,
        deadline: Deadline,
    ) -> Attempt:
        iterations = self.config.iterations
        optimizer = torch.optim.Adam(dummy.variables, lr=self.config.lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(iterations * f) for f in MILESTONES], gamma=0.1)
        done = 0
        while done < iterations and not deadline.expired():
            optimizer.zero_grad()
            loss = self._objective(model, training, target, dummy)
            if not math.isfinite(loss.item()):
                break
            loss.backward()
            dummy.images.grad.sign_()  # type: ignore[union-attr]
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                dummy.images.clamp_(0, 1)
            done += 1
        final = float(self._objective(model, training, target, dummy).detach())
        return dummy.result(final, done)
