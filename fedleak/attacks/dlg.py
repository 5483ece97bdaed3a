"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

Optimise a dummy batch x' and dummy soft labels y' so that the gradient they induce
matches the observed one:  min_{x', y'} ‖∇θ L(F(x'; θ), softmax(y')) − ∇θ‖²  (eq. 4),
with L-BFGS as in the paper. One "iteration" is one L-BFGS ``step`` (up to
``max_eval_per_step`` closure evaluations), as in the reference code's loop.

We default to a strong-Wolfe line search, which the reference code does not use: with
a fixed step of 1, L-BFGS stalled (distance ~1e-4, PSNR ~5 dB) on every iDLG case we
tried on digits/LeNet, while with the line search the same cases converge
(distance ~1e-12, PSNR > 80 dB) in a third of the time. ``line_search = "none"``
restores the reference behaviour.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from fedleak.attacks.base import ATTACKS, Attack, AttackConfig, Budget, Reconstruction
from fedleak.attacks.gradients import batch_gradient, observed_gradient, squared_distance
from fedleak.models import ImageClassifier
from fedleak.updates import ClientUpdate


class DLGConfig(AttackConfig):
    iterations: int = Field(300, ge=1)
    lr: float = Field(1.0, gt=0)
    max_eval_per_step: int = Field(20, ge=1)
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    tolerance: float = Field(1e-12, ge=0)
    """Stop once the gradient distance falls below this."""


@ATTACKS.register("dlg")
class DLG(Attack):
    Config = DLGConfig
    config: DLGConfig

    def infer_labels(self, update: ClientUpdate, model: ImageClassifier) -> torch.Tensor | None:
        """Labels fixed before optimisation, or ``None`` to optimise soft labels (DLG)."""
        return update.known_labels

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        target = observed_gradient(update, model)
        labels = self.infer_labels(update, model)
        generator = torch.Generator().manual_seed(self.config.seed)
        batch = update.metadata.num_examples
        dummy = torch.rand(batch, *model.image_shape, generator=generator)
        dummy.requires_grad_(True)
        variables = [dummy]
        if labels is None:
            label_logits = torch.randn(batch, model.num_classes, generator=generator, requires_grad=True)
            variables.append(label_logits)
        optimizer = torch.optim.LBFGS(
            variables, lr=self.config.lr, max_iter=self.config.max_eval_per_step, history_size=100,
            tolerance_grad=0.0, tolerance_change=0.0,
            line_search_fn=None if self.config.line_search == "none" else self.config.line_search,
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            targets = labels if labels is not None else label_logits.softmax(dim=1)
            distance = squared_distance(batch_gradient(model, dummy, targets, create_graph=True), target)
            distance.backward()
            return distance

        losses: list[float] = []
        for _ in range(self.config.iterations):
            losses.append(float(optimizer.step(closure).detach()))
            if not math.isfinite(losses[-1]) or losses[-1] < self.config.tolerance or deadline.expired():
                break
        recovered = labels if labels is not None else label_logits.detach().argmax(dim=1)
        return Reconstruction(
            images=dummy.detach().clamp(0, 1),
            labels=recovered,
            seconds=deadline.elapsed,
            extras={"iterations": len(losses), "final_distance": losses[-1],
                    "stopped_by_budget": deadline.expired()},
        )

