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

from fedleak.attacks.base import ATTACKS
from fedleak.attacks.gradients import batch_gradient
from fedleak.attacks.objectives import squared_distance
from fedleak.attacks.optimization import (
    Attempt,
    DummyBatch,
    InversionProblem,
    LabelSource,
    OptimizationAttack,
    OptimizationConfig,
)


class DLGConfig(OptimizationConfig):
    iterations: int = Field(300, ge=1)
    labels: LabelSource = "optimize"
    lr: float = Field(1.0, gt=0)
    max_eval_per_step: int = Field(20, ge=1)
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    tolerance: float = Field(1e-12, ge=0)
    """Stop once the gradient distance falls below this."""


@ATTACKS.register("dlg")
class DLG(OptimizationAttack):
    Config = DLGConfig
    config: DLGConfig

    def attempt(self, problem: InversionProblem, generator: torch.Generator) -> Attempt:
        dummy = DummyBatch(problem.size, problem.model, problem.labels, generator)
        optimizer = torch.optim.LBFGS(
            dummy.variables, lr=self.config.lr, max_iter=self.config.max_eval_per_step, history_size=100,
            tolerance_grad=0.0, tolerance_change=0.0,
            line_search_fn=None if self.config.line_search == "none" else self.config.line_search,
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            gradient = batch_gradient(problem.model, dummy.images, dummy.targets(), create_graph=True)
            distance = squared_distance(gradient, problem.target)
            distance.backward()
            return distance

        loss, iterations = math.inf, 0
        while iterations < self.config.iterations:
            loss = float(optimizer.step(closure).detach())
            iterations += 1
            if not math.isfinite(loss) or loss < self.config.tolerance or problem.deadline.expired():
                break
        return dummy.result(loss, iterations)
