"""L-BFGS on K independent problems at once, each with its own history and line search.

Nocedal & Wright, *Numerical Optimization* (2nd ed., 2006): the two-loop recursion
(Alg. 7.4) with H₀ = γI, γ = sᵀy / yᵀy of the newest pair (eq. 7.20), and a line
search for the strong Wolfe conditions (Alg. 3.5, its zoom Alg. 3.6, trial steps by
cubic interpolation, eq. 3.59), c₁ = 1e-4, c₂ = 0.9. The first step of a problem is
−∇f scaled by min(1, 1/‖∇f‖₁)·lr, as in ``torch.optim.LBFGS``.

How K problems share one evaluation: every *tick* evaluates each active problem once,
at the trial step its own line search asks for. The line search is scalar logic per
problem (:func:`_wolfe_search`, a generator that yields steps and receives f and the
slope ∇fᵀd there); the vectors — trial points, gradients, histories, the two-loop
recursion — are stacked, so the expensive part is one vectorised call whatever each
problem is doing.

A line search that finds no lower point (its budget spent, or its interval too short
to matter) does not end its problem. The problem stays where it was, forgets its
history and restarts from steepest descent (H₀ = I), as the L-BFGS-B code does when its
line search fails (Zhu, Byrd, Lu & Nocedal, ACM TOMS 23(4), 1997: "refresh the lbfgs
memory and restart the iteration"). Where that code gives up if −∇f fails too, here the
restart's first step (lr·min(1, 1/‖∇f‖₁), as for a problem's first step) is multiplied
by ``shrink`` once more for every failed search in a row; the factor goes back to 1
after a successful move.

A problem stops when its objective falls below ``tolerance``, when its evaluations run
out, or when its next search could not move x: its first step times ‖d‖_max is below
``min_interval`` (a zero gradient, or a step shrunk until it no longer moves x), so a
problem cannot spin. With ``line_search = "none"`` every step is taken, and the
problem stops only on ``tolerance`` or its evaluations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Literal

import torch

from fedleak.attacks.base import Deadline

Evaluate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(x rows (K', n), row indices (K',)) -> (objective (K',), gradient (K', n))``."""

_NO_MOVE = -1
"""A line search's answer when no trial was lower than the start."""


@dataclass(frozen=True)
class LBFGSOptions:
    lr: float
    """The step every line search starts from (the fixed step without a line search)."""
    max_evaluations: int
    """Objective evaluations per problem, the initial one included."""
    history: int = 100
    tolerance: float = 0.0
    line_search: Literal["strong_wolfe", "none"] = "strong_wolfe"
    max_search_evaluations: int = 25
    c1: float = 1e-4
    c2: float = 0.9
    min_interval: float = 1e-9
    """The zoom stops once its interval moves x by less than this (in the max norm), and a
    search whose first step would move x by less is not started (its problem stops)."""
    shrink: float = 0.1
    """The factor on a problem's step after each line search in a row that found no lower point."""


@dataclass
class LBFGSResult:
    x: torch.Tensor
    losses: torch.Tensor
    evaluations: torch.Tensor


@dataclass(frozen=True)
class _Trial:
    step: float
    loss: float
    slope: float
    index: int
    """Which evaluation of the search this was (``_NO_MOVE``: the start point)."""


SearchGenerator = Generator[float, tuple[float, float], int]


def _cubic_minimum(a: _Trial, b: _Trial, low: float, high: float) -> float:
    """The minimiser in [low, high] of the cubic matching f and f' at a and b (N&W eq. 3.59);
    the midpoint when the cubic has none there or the values are not finite."""
    d1 = a.slope + b.slope - 3 * (a.loss - b.loss) / (a.step - b.step)
    square = d1 * d1 - a.slope * b.slope
    if not math.isfinite(square) or square < 0:
        return (low + high) / 2
    d2 = math.copysign(math.sqrt(square), b.step - a.step)
    step = b.step - (b.step - a.step) * (b.slope + d2 - d1) / (b.slope - a.slope + 2 * d2)
    return min(max(step, low), high) if math.isfinite(step) else (low + high) / 2


def _wolfe_search(start: _Trial, step: float, scale: float, options: LBFGSOptions, budget: int) -> SearchGenerator:
    """Yield trial steps, receive (f, slope) at each; return the index of the accepted trial.

    ``start`` is the current point (step 0); ``scale`` = ‖d‖_max converts step
    intervals into moves of x; ``budget`` caps the evaluations.
    """
    c1, c2 = options.c1, options.c2

    def sufficient(trial: _Trial) -> bool:  # Armijo, and finite
        return math.isfinite(trial.loss) and trial.loss <= start.loss + c1 * trial.step * start.slope

    previous, low, high = start, start, None
    for index in range(budget):  # Alg. 3.5: grow the step until a bracket holds a Wolfe point
        loss, slope = yield step
        trial = _Trial(step, loss, slope, index)
        if not sufficient(trial) or (index > 0 and loss >= previous.loss):
            low, high = previous, trial
            break
        if abs(slope) <= -c2 * start.slope:
            return index
        if slope >= 0:
            low, high = trial, previous
            break
        step = _cubic_minimum(previous, trial, step + 0.01 * (step - previous.step), 10 * step)
        previous = low = trial
    evaluations = (index + 1) if high is not None else budget
    while high is not None and evaluations < budget:  # Alg. 3.6: zoom into [low, high]
        left, right = sorted((low.step, high.step))
        if (right - left) * scale < options.min_interval:
            break
        step = _cubic_minimum(low, high, left, right)
        margin = 0.1 * (right - left)
        if not left + margin <= step <= right - margin:  # too close to an end: bisect instead
            step = (left + right) / 2
        loss, slope = yield step
        trial = _Trial(step, loss, slope, evaluations)
        evaluations += 1
        if not sufficient(trial) or loss >= low.loss:
            high = trial
            continue
        if abs(slope) <= -c2 * start.slope:
            return trial.index
        if slope * (high.step - low.step) >= 0:
            high = low
        low = trial
    return low.index


def _fixed_step(step: float) -> SearchGenerator:
    """No line search: the step is taken whatever it gives (the reference DLG code)."""
    yield step
    return 0


class _History:
    """Each problem's newest ``size`` pairs (s, y) in a ring; an empty slot has ρ = 0,
    which makes it a no-op in the two-loop recursion (α = β = 0)."""

    def __init__(self, problems: int, size: int, dimension: int, like: torch.Tensor) -> None:
        self.s = like.new_zeros(problems, size, dimension)
        self.y = like.new_zeros(problems, size, dimension)
        self.rho = like.new_zeros(problems, size)
        self.gamma = like.new_ones(problems)
        self.head = torch.zeros(problems, dtype=torch.long, device=like.device)
        self.filled = torch.zeros(problems, dtype=torch.long, device=like.device)

    def push(self, rows: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> None:
        """Add the pairs with positive curvature (the strong Wolfe conditions guarantee
        it; rounding, or a fixed step, may not), as ``torch.optim.LBFGS`` does."""
        sy = (s * y).sum(dim=1)
        keep = sy > 1e-10
        rows, s, y, sy = rows[keep], s[keep], y[keep], sy[keep]
        slot = self.head[rows]
        self.s[rows, slot], self.y[rows, slot], self.rho[rows, slot] = s, y, 1 / sy
        self.gamma[rows] = sy / (y * y).sum(dim=1)
        self.head[rows] = (slot + 1) % self.s.shape[1]
        self.filled[rows] = (self.filled[rows] + 1).clamp_max(self.s.shape[1])

    def clear(self, rows: torch.Tensor) -> None:
        self.rho[rows], self.gamma[rows], self.filled[rows] = 0, 1, 0

    def direction(self, rows: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """−H∇f for the problems ``rows`` (two-loop recursion, newest pair first)."""
        ages = int(self.filled[rows].max()) if len(rows) else 0
        order = (self.head[rows, None] - 1 - torch.arange(ages, device=rows.device)) % self.s.shape[1]
        rho = self.rho[rows[:, None], order, None]
        s, y = self.s[rows[:, None], order], self.y[rows[:, None], order]  # (K', ages, n), newest first
        # Unbound once, with ρ folded in: the loops below are the optimiser's overhead per step.
        s_, y_, rho_s, rho_y = s.unbind(1), y.unbind(1), (rho * s).unbind(1), (rho * y).unbind(1)
        q, alphas = gradient.clone(), []
        for age in range(ages):
            alpha = torch.linalg.vecdot(rho_s[age], q)
            q.addcmul_(alpha[:, None], y_[age], value=-1)
            alphas.append(alpha)
        r = self.gamma[rows, None] * q
        for age in reversed(range(ages)):
            beta = torch.linalg.vecdot(rho_y[age], r)
            r.addcmul_((alphas[age] - beta)[:, None], s_[age])
        return -r


@dataclass
class _Search:
    """One problem's line search in progress: the step it waits for, and its trials so far."""

    steps: SearchGenerator
    pending: float
    trials: list[tuple[torch.Tensor, float, torch.Tensor]] = field(default_factory=list)


def minimize(evaluate: Evaluate, x: torch.Tensor, options: LBFGSOptions, deadline: Deadline) -> LBFGSResult:
    """Minimise K objectives from the rows of ``x`` ``(K, n)``; every problem gets at least one evaluation."""
    x = x.detach().clone()
    every = torch.arange(len(x), device=x.device)
    loss, gradient = evaluate(x, every)
    evaluations = torch.ones(len(x), dtype=torch.long, device=x.device)
    history = _History(len(x), options.history, x.shape[1], x)
    direction = -gradient
    factor = torch.ones_like(loss)  # per problem: shrink ** (its failed searches since it last moved)
    first_steps = _steepest_step(gradient, factor, options)
    searches = _start_searches(every[_unfinished(loss, evaluations, options)], first_steps, loss, gradient, direction,
                               evaluations, options)
    while searches and not deadline.expired():
        rows = torch.tensor(sorted(searches), device=x.device)
        steps = torch.tensor([searches[k].pending for k in rows.tolist()], dtype=x.dtype, device=x.device)
        trial = x[rows] + steps[:, None] * direction[rows]
        trial_loss, trial_gradient = evaluate(trial, rows)
        evaluations[rows] += 1
        slopes = (trial_gradient * direction[rows]).sum(dim=1)
        accepted: dict[int, int] = {}
        for i, (k, f, slope) in enumerate(zip(rows.tolist(), trial_loss.tolist(), slopes.tolist())):
            search = searches[k]
            search.trials.append((trial[i], f, trial_gradient[i]))
            try:
                search.pending = search.steps.send((f, slope))
            except StopIteration as answer:
                accepted[k] = answer.value
        moved = _move(accepted, searches, x, loss, gradient, direction, history)
        failed = torch.tensor(sorted(k for k, index in accepted.items() if index == _NO_MOVE),
                              dtype=torch.long, device=x.device)
        # A failed search blames the direction first (the history), then the step: retry
        # along −∇f, each time from a step ``shrink`` times shorter than the last.
        _steepest_descent(failed, gradient, direction, history)
        factor[moved] = 1
        factor[failed] *= options.shrink
        next_steps = torch.full_like(loss, options.lr)  # after a move: the quasi-Newton step
        next_steps[failed] = _steepest_step(gradient[failed], factor[failed], options)
        for k in accepted:
            del searches[k]
        again = torch.cat([moved, failed])
        again = again[_unfinished(loss, evaluations, options)[again]]
        searches.update(_start_searches(again, next_steps, loss, gradient, direction, evaluations, options))
    return LBFGSResult(x, loss, evaluations)


def _unfinished(loss: torch.Tensor, evaluations: torch.Tensor, options: LBFGSOptions) -> torch.Tensor:
    """Which problems may go on: evaluations left, and a finite objective not yet below ``tolerance``."""
    return (evaluations < options.max_evaluations) & loss.isfinite() & (loss >= options.tolerance)


def _steepest_step(gradient: torch.Tensor, factor: torch.Tensor, options: LBFGSOptions) -> torch.Tensor:
    """The first step along −∇f: ``factor``·lr·min(1, 1/‖∇f‖₁), as in ``torch.optim.LBFGS`` (without
    a history there is no curvature to scale the step by, so the gradient's size bounds it)."""
    return factor * options.lr * (1 / gradient.abs().sum(dim=1)).clamp_max(1)


def _steepest_descent(rows: torch.Tensor, gradient: torch.Tensor, direction: torch.Tensor, history: _History) -> None:
    """Forget the history of the problems ``rows`` and point them along −∇f (H = I)."""
    history.clear(rows)
    direction[rows] = -gradient[rows]


def _start_searches(
    rows: torch.Tensor, steps: torch.Tensor, loss: torch.Tensor, gradient: torch.Tensor, direction: torch.Tensor,
    evaluations: torch.Tensor, options: LBFGSOptions,
) -> dict[int, _Search]:
    """A line search from ``steps[k]`` along ``direction[k]`` for each problem k of ``rows``.

    A strong-Wolfe search whose first step would move x by less than ``min_interval``
    (max norm, the bound the zoom stops at) is not started, and its problem stops there:
    its gradient is zero, or its step has shrunk so far after failed searches that it no
    longer moves x. Between two moves a problem therefore fails at most
    log(step·‖d‖_max / min_interval) / log(1 / shrink) + 1 searches, each of at most
    ``max_search_evaluations``; every move lowers f.
    """
    slopes = (gradient[rows] * direction[rows]).sum(dim=1).tolist()
    scales = direction[rows].abs().amax(dim=1).tolist()
    searches = {}
    for k, slope, scale in zip(rows.tolist(), slopes, scales):
        step = float(steps[k])
        if options.line_search == "none":
            steps_of_k = _fixed_step(step)
        elif step * scale < options.min_interval:
            continue
        else:
            budget = min(options.max_search_evaluations, options.max_evaluations - int(evaluations[k]))
            start = _Trial(0.0, float(loss[k]), slope, _NO_MOVE)
            steps_of_k = _wolfe_search(start, step, scale, options, budget)
        searches[k] = _Search(steps_of_k, next(steps_of_k))
    return searches


def _move(
    accepted: dict[int, int], searches: dict[int, _Search], x: torch.Tensor, loss: torch.Tensor,
    gradient: torch.Tensor, direction: torch.Tensor, history: _History,
) -> torch.Tensor:
    """Move each problem whose search ended at a lower trial to it, update its history and
    direction; return the problems that moved (a search without a lower point leaves its
    problem where it was, for :func:`minimize` to restart)."""
    moves = {k: searches[k].trials[index] for k, index in accepted.items() if index != _NO_MOVE}
    rows = torch.tensor(sorted(moves), dtype=torch.long, device=x.device)
    if not moves:
        return rows
    points = torch.stack([moves[k][0] for k in sorted(moves)])
    gradients = torch.stack([moves[k][2] for k in sorted(moves)])
    history.push(rows, points - x[rows], gradients - gradient[rows])
    x[rows], gradient[rows] = points, gradients
    loss[rows] = torch.tensor([moves[k][1] for k in sorted(moves)], dtype=loss.dtype, device=loss.device)
    direction[rows] = history.direction(rows, gradients)
    # Rounding can make the two-loop direction point uphill: forget the history, use −∇f.
    _steepest_descent(rows[(gradients * direction[rows]).sum(dim=1) >= 0], gradient, direction, history)
    return rows
