"""Dummy-data inversion of many problems at once: jobs × restarts as one optimisation.

DLG, iDLG and Inverting Gradients optimise dummy images (and maybe label logits) until
the update they induce matches the observed one. Against one global model, every
client's attack and every restart is such a problem with the same shapes, so K of
them are stacked along a leading axis and solved together: each problem's objective
is written once, as a function of *its* variables, and ``torch.func.vmap`` evaluates
it and its gradient for all K in one call. The K objectives share no variables, so an
optimiser that acts elementwise (Adam) or keeps per-problem state
(:mod:`fedleak.attacks.lbfgs`) gives every problem what it would get alone; a single
attack is the case of one job (its restarts are still stacked).

An attack joins by subclassing :class:`StackedInversion` and writing
:meth:`~StackedInversion.objective` and :meth:`~StackedInversion.optimize`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap

from fedleak.attacks.base import Attack, Budget, Deadline, Reconstruction
from fedleak.attacks.gradients import Parameters, observed_gradient, untransformed
from fedleak.attacks.optimization import OptimizationConfig, fixed_labels
from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.models import ImageClassifier

Objective = Callable[..., torch.Tensor]
"""``(images (B, C, H, W), label targets, target list) -> scalar`` for one problem; the
label targets are class indices ``(B,)`` or a distribution ``(B, classes)``."""


@dataclass(frozen=True)
class ProblemStack:
    """K inversion problems against one model, problem k's data at index k of each tensor."""

    model: ImageClassifier
    """The global model's :meth:`~fedleak.models.ImageClassifier.training_simulation`, on the attack's device."""
    parameters: Parameters
    """The global weights, detached: what every simulated client starts from."""
    targets: list[torch.Tensor]
    """The observed quantity per problem, each ``(K, *parameter shape)``."""
    labels: torch.Tensor | None
    """Fixed labels ``(K, B)``, or ``None`` when the problems optimise label logits."""
    training: UpdateMetadata
    """The local training every stacked update declares (the batch key makes it shared)."""
    deadline: Deadline

    @property
    def count(self) -> int:
        return len(self.targets[0])

    @property
    def size(self) -> int:
        """Samples per problem: the distinct examples the clients declared."""
        return self.training.num_examples

    def value_and_grad(self, objective: Objective) -> Callable[..., tuple[torch.Tensor, list[torch.Tensor]]]:
        """``(variables, rows) -> (objective (K',), its gradient per variable)`` for the problems ``rows``.

        ``variables`` are stacked ``(K', …)`` — the images, then the label logits unless
        the labels are fixed. A single problem skips ``torch.func`` for the outer
        gradient (its overhead would bias one-by-one timings), and inside it the client's gradient is
        plain autograd too (:func:`~fedleak.attacks.gradients.untransformed`). ``rows`` are distinct and
        in increasing order (all of them: no copy of the targets).
        """
        optimizes_labels = self.labels is None

        def one(target: list[torch.Tensor], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return objective(images, labels.softmax(dim=-1) if optimizes_labels else labels, target)

        argnums = (1, 2) if optimizes_labels else (1,)
        per_problem = grad_and_value(one, argnums=argnums)

        def evaluate(variables: list[torch.Tensor], rows: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
            every = len(rows) == self.count  # all problems, in order: no copy of the targets each step
            target = self.targets if every else [t[rows] for t in self.targets]
            if self.labels is None:  # optimised with the images
                labels = variables[1]
            else:
                labels = self.labels if every else self.labels[rows]
            if len(rows) == 1:  # plain autograd: ~1.5x faster than torch.func for one problem
                inputs = [v[0].detach().requires_grad_(True) for v in variables]
                with untransformed():
                    value = one([t[0] for t in target], inputs[0], inputs[1] if optimizes_labels else labels[0])
                return value.detach()[None], [g[None] for g in torch.autograd.grad(value, inputs)]
            gradient, value = vmap(per_problem)(target, variables[0], labels)
            return value, list(gradient)

        return evaluate


@dataclass
class Solution:
    """What an optimiser reached per problem: final objective ``(K,)`` and steps taken ``(K,)``."""

    losses: torch.Tensor
    iterations: torch.Tensor


class StackedInversion(Attack):
    """An optimisation attack on dummy data that solves many problems as one."""

    Config = OptimizationConfig
    config: OptimizationConfig

    def observed(self, update: ClientUpdate, model: ImageClassifier) -> list[torch.Tensor]:
        """What the attack matches; the update read as one gradient unless overridden."""
        return observed_gradient(update, model)

    @classmethod
    def batch_key(cls, update: ClientUpdate) -> Hashable:
        """Updates of one round share the global weights; equal training metadata and
        label knowledge give equal shapes, so such updates stack."""
        return (update.run_id, update.server_round, update.metadata, update.known_labels is None)

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        return self.run_batch([update], model, budget)[0]

    def run_batch(
        self, updates: Sequence[ClientUpdate], model: ImageClassifier, budget: Budget
    ) -> list[Reconstruction]:
        """Attack ``updates`` (one batch key) together: every update × every restart."""
        keys = {self.batch_key(update) for update in updates}
        if len(keys) > 1:
            raise ValueError(f"a batch needs updates with one batch key, got {len(keys)}")
        stack, variables = self._stack(updates, model, budget.deadline())
        solution = self.optimize(stack, variables)
        return self._best_per_update(len(updates), stack, variables, solution)

    def _stack(
        self, updates: Sequence[ClientUpdate], model: ImageClassifier, deadline: Deadline
    ) -> tuple[ProblemStack, list[torch.Tensor]]:
        restarts, device = self.config.restarts, self.config.torch_device()
        targets = [self.observed(update, model) for update in updates]
        labels = [fixed_labels(self.config, update, model) for update in updates]
        simulation = model.training_simulation().to(device)  # a copy: the caller's model stays as it is

        def stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack([t for t in tensors for _ in range(restarts)]).to(device)

        stack = ProblemStack(
            simulation, {name: p.detach() for name, p in simulation.parameters_by_name().items()},
            [stacked([t[i] for t in targets]) for i in range(len(targets[0]))],
            None if labels[0] is None else stacked(labels),  # type: ignore[arg-type]
            updates[0].metadata, deadline,
        )
        starts = [self._starts(stack, model) for _ in updates]  # each job draws as it would alone
        variables = [torch.cat(parts).to(device).requires_grad_(True) for parts in zip(*starts)]
        return stack, variables

    def _starts(self, stack: ProblemStack, model: ImageClassifier) -> list[torch.Tensor]:
        """One job's restarts: DLG's initialisation (uniform images, standard-normal logits),
        drawn restart after restart from one generator seeded with ``config.seed``."""
        generator = torch.Generator().manual_seed(self.config.seed)
        images, logits = [], []
        for _ in range(self.config.restarts):
            images.append(torch.rand(stack.size, *model.image_shape, generator=generator))
            if stack.labels is None:
                logits.append(torch.randn(stack.size, model.num_classes, generator=generator))
        return [torch.stack(images)] + ([torch.stack(logits)] if logits else [])

    def _best_per_update(
        self, jobs: int, stack: ProblemStack, variables: list[torch.Tensor], solution: Solution
    ) -> list[Reconstruction]:
        restarts = self.config.restarts
        losses = torch.where(solution.losses.isfinite(), solution.losses, math.inf).view(jobs, restarts)
        images = variables[0].detach().clamp(0, 1).cpu()
        labels = (variables[1].detach().argmax(dim=2) if stack.labels is None else stack.labels).cpu()
        results = []
        for job, best in enumerate(losses.argmin(dim=1).tolist()):
            k = job * restarts + best
            results.append(Reconstruction(
                images=images[k], labels=labels[k], seconds=stack.deadline.elapsed,
                extras={
                    "iterations": int(solution.iterations[k]), "iterations_planned": self.config.iterations,
                    "restarts": restarts, "restarts_planned": restarts,
                    "final_loss": float(solution.losses[k]),
                    "restart_losses": solution.losses.view(jobs, restarts)[job].tolist(),
                    "stopped_by_budget": stack.deadline.expired(), "stacked_problems": stack.count,
                },
            ))
        return results

    @abstractmethod
    def objective(
        self, stack: ProblemStack, images: torch.Tensor, labels: torch.Tensor, target: list[torch.Tensor]
    ) -> torch.Tensor:
        """One problem's objective (``torch.func``-traceable: no ``.item()``, no in-place on inputs)."""

    @abstractmethod
    def optimize(self, stack: ProblemStack, variables: list[torch.Tensor]) -> Solution:
        """Minimise every problem's objective in place in ``variables``; stop at the deadline."""
