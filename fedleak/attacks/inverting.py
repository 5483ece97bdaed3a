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

from functools import partial
from typing import Literal

import torch
from pydantic import Field

from fedleak.attacks.base import ATTACKS, Requirement
from fedleak.attacks.gradients import observed_delta, simulated_update
from fedleak.attacks.objectives import cosine_distance, total_variation
from fedleak.attacks.optimization import OptimizationConfig
from fedleak.attacks.stacked import ProblemStack, Solution, StackedInversion
from fedleak.core.updates import ClientUpdate
from fedleak.models import ImageClassifier

MILESTONES = (3 / 8, 5 / 8, 7 / 8)
"""Fractions of the iterations where the step size drops tenfold (Geiping et al.'s schedule)."""


class InvertingConfig(OptimizationConfig):
    iterations: int = Field(4800, ge=1)
    """4800 Adam steps: the paper's CIFAR-10 budget (24 000 on ImageNet)."""
    lr: float = Field(0.1, gt=0)
    tv_weight: float = Field(1e-6, ge=0)
    """Weight of the TV prior. On MNIST digits 1e-4 over-smoothed the strokes (22 dB at batch 1,
    LeNet, against 53 dB at 1e-6 and 93 dB without the prior); it earns its keep on natural images."""
    fedavg: Literal["unroll", "pseudo-gradient"] = "unroll"
    """How a multi-step update is modelled: unrolled local training, or one gradient."""


@ATTACKS.register("inverting")
class InvertingGradients(StackedInversion):
    Config = InvertingConfig
    config: InvertingConfig
    requires = frozenset({Requirement.TRAINING})

    def observed(self, update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
        return observed_delta(update, model)

    def objective(
        self, stack: ProblemStack, images: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor]
    ) -> torch.Tensor:
        training = stack.training
        if self.config.fedavg == "unroll":
            lr, steps, batch_size = training.lr, training.local_steps, training.batch_size
        else:
            lr, steps, batch_size = training.lr * training.local_steps, 1, stack.size
        update = simulated_update(stack.model, stack.parameters, images, labels, lr, steps, batch_size)
        return cosine_distance(update, target) + self.config.tv_weight * total_variation(images)

    def optimize(self, stack: ProblemStack, variables: list[torch.Tensor]) -> Solution:
        """Adam on the signed image gradient, clamped to [0, 1] after each step. Adam, the
        sign and the clamp act elementwise, so each stacked problem moves as it would alone;
        a problem whose objective turns non-finite is frozen where it was."""
        iterations = self.config.iterations
        optimizer = torch.optim.Adam(variables, lr=self.config.lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(iterations * f) for f in MILESTONES], gamma=0.1)
        value_and_grad = stack.value_and_grad(partial(self.objective, stack))
        device = variables[0].device
        every = torch.arange(stack.count, device=device)
        active = torch.ones(stack.count, dtype=torch.bool, device=device)
        done = torch.zeros(stack.count, dtype=torch.long, device=device)
        for _ in range(iterations):
            if stack.deadline.expired():
                break
            loss, gradients = value_and_grad([v.detach() for v in variables], every)
            active &= loss.isfinite()
            if not active.any():
                break
            gradients[0] = gradients[0].sign()
            frozen = ~active if not active.all() else None  # the common case: nothing to hold still
            kept = [v.detach()[frozen] for v in variables] if frozen is not None else []
            for variable, gradient in zip(variables, gradients):
                variable.grad = gradient
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                variables[0].clamp_(0, 1)
                for variable, values in zip(variables, kept):
                    variable[frozen] = values
            done += active
        loss, _ = value_and_grad([v.detach() for v in variables], every)
        return Solution(loss, done)
