"""fedleak's stacked L-BFGS: a failed line search restarts its problem, which stays independent and stops."""

import pytest
import torch

from fedleak.attacks.base import Deadline
from fedleak.attacks.lbfgs import LBFGSOptions, minimize


def _quadratic(x: torch.Tensor, scales: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """½ Σ aᵢ xᵢ², badly scaled when the aᵢ differ by orders of magnitude."""
    a = x.new_tensor(scales)
    return 0.5 * (a * x * x).sum(), a * x


def _rosenbrock(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u, v = x
    loss = (1 - u) ** 2 + 100 * (v - u * u) ** 2
    return loss, torch.stack([-2 * (1 - u) - 400 * u * (v - u * u), 200 * (v - u * u)])


def _flat(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A loss that never decreases although the gradient says it would (as rounding can make it)."""
    return x.new_tensor(1.0), torch.ones_like(x)


def _stack(*objectives):
    """An ``Evaluate`` over problems k = 0, 1, …, problem k minimising ``objectives[k]``."""

    def evaluate(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        losses, gradients = zip(*(objectives[k](point) for point, k in zip(x, rows.tolist())))
        return torch.stack(losses), torch.stack(gradients)

    return evaluate


def _solve(objectives, starts, **options):
    x = torch.tensor(starts, dtype=torch.float64)
    return minimize(_stack(*objectives), x, LBFGSOptions(**options), Deadline(None))


ILL_CONDITIONED = (lambda x: _quadratic(x, [1.0, 1e3]), [1.0, 1.0], [0.0, 0.0])
ROSENBROCK = (_rosenbrock, [-1.2, 1.0], [1.0, 1.0])
OVERSHOOTING = {"lr": 1e4, "max_search_evaluations": 10}
"""The first trial, a step of lr/‖∇f‖₁ ≈ 10–33 along −∇f, moves x by ~1e4, where both functions
are orders of magnitude higher, and 9 bisections cannot get back to a lower point: the first
search fails (on the old code, for good), and so do later ones until the step has shrunk."""


@pytest.mark.parametrize(("objective", "start", "minimum"), [ILL_CONDITIONED, ROSENBROCK],
                         ids=["quadratic", "rosenbrock"])
def test_a_failed_line_search_restarts_and_the_problem_still_converges(objective, start, minimum):
    options = {**OVERSHOOTING, "max_evaluations": 2000, "tolerance": 1e-16}
    result = _solve([objective], [start], **options)
    assert int(result.evaluations[0]) > 1 + options["max_search_evaluations"]  # it went on after the failure
    assert int(result.evaluations[0]) < options["max_evaluations"]  # and ended on the tolerance
    assert float(result.losses[0]) < 1e-16
    torch.testing.assert_close(result.x[0], torch.tensor(minimum, dtype=torch.float64), atol=1e-6, rtol=0)


def test_stacked_problems_give_what_each_gives_alone_when_some_fail_their_searches():
    # Two problems fail searches and recover, the flat one fails every search until its step
    # is too short to move x, one sits at its minimum, and for one lr 1e4 is the right step.
    # Each must be blind to the others' restarts.
    at_minimum = (lambda x: _quadratic(x, [1.0, 1.0]), [0.0, 0.0])
    well_scaled = (lambda x: _quadratic(x, [1e-4, 1e-4]), [1.0, 1.0])
    problems = [ILL_CONDITIONED[:2], ROSENBROCK[:2], (_flat, [0.5, -0.5]), at_minimum, well_scaled]
    objectives, starts = zip(*problems)
    options = {**OVERSHOOTING, "max_evaluations": 2000, "tolerance": 1e-16}
    together = _solve(objectives, starts, **options)
    for k, (objective, start) in enumerate(problems):
        alone = _solve([objective], [start], **options)
        assert torch.equal(together.x[k], alone.x[0]) and torch.equal(together.losses[k], alone.losses[0])
        assert int(together.evaluations[k]) == int(alone.evaluations[0])
    assert (together.losses[[0, 1, 4]] < 1e-16).all()  # failed searches ended none of them
    assert (together.evaluations < options["max_evaluations"]).all()  # and each stopped on its own


@pytest.mark.parametrize(("objective", "start", "most"), [
    ((lambda x: _quadratic(x, [1.0, 1.0])), [0.0, 0.0], 1),  # zero gradient: nothing to search along
    (_flat, [0.5, -0.5], 400),  # every search fails; the step shrinks below min_interval in ~10 of them
], ids=["zero-gradient", "loss-never-decreases"])
def test_a_problem_that_cannot_move_stops_instead_of_spending_its_budget(objective, start, most):
    result = _solve([objective], [start], lr=1.0, max_evaluations=10_000)
    assert int(result.evaluations[0]) <= most
    assert torch.equal(result.x[0], torch.tensor(start, dtype=torch.float64))
