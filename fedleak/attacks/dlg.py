"""Deep Leakage from Gradients (Zhu, Liu & Han, NeurIPS 2019).

Optimise a dummy batch x' and dummy soft labels y' so that the gradient they induce
matches the observed one:  min_{x', y'} ‖∇θ L(F(x'; θ), softmax(y')) − ∇θ‖²  (eq. 4),
with L-BFGS as in the paper. One "iteration" is up to ``max_eval_per_step`` objective
evaluations, as one ``LBFGS.step`` of the reference code's loop.

Many attacks (clients × restarts) run as one vectorised L-BFGS
(:mod:`fedleak.attacks.stacked`, :mod:`fedleak.attacks.lbfgs`), one problem's history and
line search independent of the others'. The reference code takes fixed steps of 1
(``line_search = "none"``); we default to a strong-Wolfe line search, which made
L-BFGS converge where fixed steps stalled (see BENCHMARKS.md).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
from pydantic import Field

from fedleak.attacks.base import ATTACKS
from fedleak.attacks.gradients import parameter_gradient
from fedleak.attacks.lbfgs import LBFGSOptions, minimize
from fedleak.attacks.objectives import squared_distance
from fedleak.attacks.optimization import LabelSource, OptimizationConfig
from fedleak.attacks.stacked import ProblemStack, Solution, StackedInversion


class DLGConfig(OptimizationConfig):
    iterations: int = Field(300, ge=1)
    labels: LabelSource = "optimize"
    lr: float = Field(1.0, gt=0)
    max_eval_per_step: int = Field(20, ge=1)
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    history_size: int = Field(100, ge=1)
    tolerance: float = Field(1e-12, ge=0)
    """Stop once the gradient distance falls below this."""


@ATTACKS.register("dlg")
class DLG(StackedInversion):
    Config = DLGConfig
    config: DLGConfig

    def objective(
        self, stack: ProblemStack, images: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor]
    ) -> torch.Tensor:
        gradient = parameter_gradient(stack.model, stack.parameters, images, labels)
        return squared_distance(list(gradient.values()), target)

    def optimize(self, stack: ProblemStack, variables: list[torch.Tensor]) -> Solution:
        shapes = [v.shape[1:] for v in variables]
        sizes = [math.prod(shape) for shape in shapes]
        value_and_grad = stack.value_and_grad(partial(self.objective, stack))

        def evaluate(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [part.view(len(x), *shape) for part, shape in zip(x.split(sizes, dim=1), shapes)]
            value, gradient = value_and_grad(parts, rows)
            return value, torch.cat([g.reshape(len(x), -1) for g in gradient], dim=1)

        config = self.config
        options = LBFGSOptions(
            lr=config.lr, max_evaluations=config.iterations * config.max_eval_per_step,
            history=config.history_size, tolerance=config.tolerance, line_search=config.line_search,
        )
        start = torch.cat([v.detach().reshape(len(v), -1) for v in variables], dim=1)
        result = minimize(evaluate, start, options, stack.deadline)
        with torch.no_grad():
            for variable, part in zip(variables, result.x.split(sizes, dim=1)):
                variable.copy_(part.view_as(variable))
        iterations = (result.evaluations + config.max_eval_per_step - 1) // config.max_eval_per_step
        return Solution(result.losses, iterations)
