"""Provable batch recovery from one gradient at random parameters (Wang, Lee & Lei, AISTATS 2023).

For a two-layer network f(x) = Σⱼ aⱼ σ(wⱼᵀx) the gradient of a batch loss carries, for
every hidden unit j, the value and the gradient of one function at the point wⱼ:

    g(w) = Σᵢ ρᵢ σ(wᵀxᵢ),   ∂L/∂aⱼ = g(wⱼ),   ∂L/∂wⱼ = aⱼ ∇g(wⱼ),

with ρᵢ the per-sample residual (paper §3). When the server draws the wⱼ ~ N(0, I) (a
*random query*, see :mod:`fedleak.adversary.malicious`), Stein's lemma turns averages over units into
moment tensors of the batch (paper §4, Hermite moments):

    E[∇g(w) ⊗ He₃(w)] = E[∇⁴g(w)] = Σᵢ ρᵢ E[σ⁗(wᵀxᵢ)] xᵢ^{⊗4}.

The steps of the paper's algorithm, one function each:

1. **span** – ∇g(w) = Σᵢ ρᵢ σ′(wᵀxᵢ) xᵢ lies in span{xᵢ}, so the top-B right singular
   vectors of the gradient matrix are the span (exactly, up to float noise);
2. **moment tensor** – the order-4 Hermite moment above, in the B-dim span. ReLU's
   Hermite coefficients of odd order > 1 vanish, so order 3 carries nothing and order 2
   (a matrix) has no unique decomposition: order 4 is the lowest that identifies the xᵢ;
3. **decomposition** – flattened to a B²×B² matrix, the tensor has rank B with range
   span{vec(xᵢxᵢᵀ)}; the xᵢ are the rank-one directions in that range, found by power
   iteration (non-orthogonal components, so no whitening is needed);
4. **refinement** – for a piecewise-linear σ, ∇g(wⱼ) = Σᵢ σ′(wⱼᵀxᵢ) zᵢ with zᵢ = ρᵢxᵢ is
   *linear* in the zᵢ once the activation pattern is known: alternate the pattern (predicted
   from the current directions, corrected row by row to fit the observed gradient) and a
   least-squares fit of the zᵢ. On exact gradients this converges to the batch exactly.

Deviations from the paper (see the module's functions): the span comes from the gradient
matrix rather than a sampled second moment (exact instead of estimated); the order-4 moment
is estimated from ∇g with order-3 Hermite polynomials and two control variates; the
decomposition is a power iteration on the span of the flattened tensor rather than a
tensor power method on a whitened tensor (the second moment Σᵢ ρᵢxᵢxᵢᵀ is indefinite when
the ρᵢ have both signs, so it cannot whiten). ReLU only gives directions: the scale of each
input comes from the hidden bias, read as an extra input coordinate (x̃ = [x, s]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import Field
from torch import nn

from fedleak.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackNotApplicable,
    Budget,
    Deadline,
    Reconstruction,
    Requirement,
)
from fedleak.attacks.linear_systems import ACTIVATIONS, RESHAPES
from fedleak.core.updates import ClientUpdate
from fedleak.models import ImageClassifier
from fedleak.models.base import linear_layers

DTYPE = torch.float64
_ROWS_PER_CHUNK = 2048
"""Hidden units per chunk when forming the moment tensor (bounds memory at large widths)."""
_SAME_COMPONENT = 0.95
"""|cos| above which a power-iteration result is taken for a component already found."""
_POWER_TOLERANCE = 1e-9
"""The power iteration stops once no coordinate of any start moves more than this in a step."""


class TensorConfig(AttackConfig):
    batch_size: int | None = Field(None, ge=1)
    """Inputs to recover (B); ``None``: the batch size in the update's metadata."""
    starts: int = Field(8, ge=1)
    """Random starts of the power iteration per component (the best distinct one is kept)."""
    power_steps: int = Field(100, ge=1)
    """Power-iteration steps per start (once deflated, once on the full span)."""
    refinement_iterations: int = Field(30, ge=0)
    """Pattern / least-squares alternations (stops earlier once the pattern is stable)."""
    pattern_flips: int = Field(3, ge=0)
    """Per iteration, how many activation-pattern entries each unit may flip to fit its gradient."""
    min_output_weight: float = Field(0.1, ge=0, lt=1)
    """Use hidden units whose output weight |aⱼ| is at least this fraction of the largest
    (∇g = ∂L/∂wⱼ / aⱼ amplifies noise where aⱼ ≈ 0; a crafted query has |aⱼ| all equal)."""


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found: unit directions of the inputs and how well they fit."""

    directions: torch.Tensor
    """(B, D) unit vectors, one per input, in the coordinates of the query points."""
    strengths: torch.Tensor
    """(B,) ρᵢ‖xᵢ‖: each input's residual times its norm (signed)."""
    span_gap: float
    """σ_{B+1}/σ_B of the gradient matrix (≈ 0: the gradients span exactly B directions)."""
    tensor_gap: float
    """|λ_{B+1}|/|λ_B| of the flattened moment tensor (small: the span of xᵢxᵢᵀ stands out of noise)."""
    decomposition_score: float
    """Smallest ‖projection of vec(xxᵀ) on that span‖² over the components found (1: exactly rank-one)."""
    gradient_loss: float
    """‖∇g − fit‖² / ‖∇g‖² after refinement."""
    value_loss: float
    """‖g − fit‖² / ‖g‖² after refinement (g is not fitted: an independent check)."""
    refinement_iterations: int
    stopped_by_budget: bool


def activation_slope(pre_activations: torch.Tensor, slope: float) -> torch.Tensor:
    """σ′ of a (leaky) ReLU with negative slope ``slope``, elementwise (1 where positive)."""
    return torch.where(pre_activations > 0, 1.0, slope).to(pre_activations.dtype)


def gradient_span(gradients: torch.Tensor, rank: int) -> tuple[torch.Tensor, float]:
    """Orthonormal basis (D, rank) of the span of the rows of ``gradients`` (M, D), and σ_{rank+1}/σ_rank.

    Each ∇g(wⱼ) is a combination of the inputs, so the right singular vectors with non-zero
    singular values span them (paper Step 1 estimates this span from a second moment).
    """
    _, singular, right = torch.linalg.svd(gradients, full_matrices=False)
    gap = float(singular[rank] / singular[rank - 1]) if len(singular) > rank else 0.0
    return right[:rank].T, gap


def fourth_moment(points: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Estimate E[∇⁴g] (B, B, B, B) from points w ~ N(0, I_B) and gradients ∇g(w), both (M, B).

    Stein's lemma gives E[∇g ⊗ He₃(w)] = E[∇⁴g] with He₃(w) = w⊗w⊗w − Sym(w⊗I). Subtracting
    the order-0 and order-1 Hermite parts of ∇g (its mean and M·w, M = E[∇g wᵀ]) leaves the
    expectation unchanged (He₃ is orthogonal to them) and removes most of the variance: the
    step function σ′ puts ≈ 64% of its energy in those two orders. The result is symmetrised
    over its four indices, as the true moment is.
    """
    count, dim = points.shape
    first = gradients.T @ points / count
    residual = gradients - gradients.mean(dim=0) - points @ first.T
    cubic = torch.zeros(dim * dim, dim * dim, dtype=DTYPE)
    for start in range(0, count, _ROWS_PER_CHUNK):
        w, r = points[start:start + _ROWS_PER_CHUNK], residual[start:start + _ROWS_PER_CHUNK]
        cubic += (r[:, :, None] * w[:, None, :]).flatten(1).T @ (w[:, :, None] * w[:, None, :]).flatten(1)
    cubic = cubic.view(dim, dim, dim, dim) / count
    linear = residual.T @ points / count
    eye = torch.eye(dim, dtype=DTYPE)
    correction = (torch.einsum("ab,ce->abce", linear, eye) + torch.einsum("ac,be->abce", linear, eye)
                  + torch.einsum("ae,bc->abce", linear, eye))
    return _symmetrize(cubic - correction)


def _symmetrize(tensor: torch.Tensor) -> torch.Tensor:
    """Average over which index holds ∇g (the other three are already symmetric)."""
    return (tensor + tensor.permute(1, 0, 2, 3) + tensor.permute(2, 1, 0, 3) + tensor.permute(3, 1, 2, 0)) / 4


def rank_one_span(moment: torch.Tensor, rank: int) -> tuple[torch.Tensor, float]:
    """The span of {vec(xᵢxᵢᵀ)} as ``rank`` orthonormal symmetric matrices (rank, B, B), and the eigen-gap.

    E[∇⁴g] flattened to (B², B²) is Σᵢ cᵢ vec(xᵢxᵢᵀ)vec(xᵢxᵢᵀ)ᵀ with cᵢ of either sign, so its
    range is the top-``rank`` eigenspace by |eigenvalue|.
    """
    dim = moment.shape[0]
    flat = moment.reshape(dim * dim, dim * dim)
    eigenvalues, eigenvectors = torch.linalg.eigh((flat + flat.T) / 2)
    order = eigenvalues.abs().argsort(descending=True)
    gap = float(eigenvalues[order[rank]].abs() / eigenvalues[order[rank - 1]].abs()) if dim > 1 else 0.0
    return eigenvectors[:, order[:rank]].T.reshape(rank, dim, dim), gap


def _power_iteration(span: torch.Tensor, starts: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximise Σₖ (xᵀQₖx)² over unit x (columns of ``starts``); returns the points and their scores.

    The objective is ‖projection of vec(xxᵀ) on span{Qₖ}‖², which is 1 exactly at the rank-one
    members ±xᵢ of the span; x ← Σₖ (xᵀQₖx) Qₖx is its power (fixed-point) update.
    """
    count, dim, _ = span.shape
    stacked = span.reshape(count * dim, dim)

    def images_and_quadratics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = (stacked @ x).view(count, dim, -1)  # Qₖx for every k and start
        return images, (images * x).sum(dim=1)

    x = starts / starts.norm(dim=0)
    for step in range(steps):
        images, quadratic = images_and_quadratics(x)
        previous, x = x, (quadratic[:, None, :] * images).sum(dim=0)
        x = x / x.norm(dim=0)
        if step % 10 == 9 and float((x - previous).abs().max()) < _POWER_TOLERANCE:
            break
    return x, (images_and_quadratics(x)[1] ** 2).sum(dim=0)


def rank_one_components(
    span: torch.Tensor, generator: torch.Generator, starts: int, steps: int, deadline: Deadline,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The ``len(span)`` rank-one directions in ``span`` (B, B, B): columns (B, B), their scores, stopped.

    One component at a time: the power iteration first runs on the span with the found
    xᵢxᵢᵀ projected out (its maxima lie near components not found yet), then on the full
    span to converge onto one; the best start not parallel to a found one is kept (else the
    best deflated start). Stops early when the deadline expires (the rest stay random).
    """
    count, dim, _ = span.shape
    basis = span.reshape(count, -1).T
    found = torch.randn(dim, count, generator=generator, dtype=DTYPE)
    found = found / found.norm(dim=0)
    for index in range(count):
        if deadline.expired():
            return found, _power_iteration(span, found, 0)[1], True
        deflated = span
        if index:
            known, _ = torch.linalg.qr(torch.stack([torch.outer(x, x).flatten() for x in found[:, :index].T], 1))
            rest, _, _ = torch.linalg.svd(basis - known @ (known.T @ basis), full_matrices=False)
            deflated = rest[:, : count - index].T.reshape(-1, dim, dim)
        guesses = torch.randn(dim, starts, generator=generator, dtype=DTYPE)
        near, near_scores = _power_iteration(deflated, guesses, steps)
        polished, scores = _power_iteration(span, near, steps)
        similarity = (found[:, :index].T @ polished).abs().amax(dim=0) if index else torch.zeros(starts, dtype=DTYPE)
        distinct = [a for a in scores.argsort(descending=True).tolist() if similarity[a] < _SAME_COMPONENT]
        found[:, index] = polished[:, distinct[0]] if distinct else near[:, int(near_scores.argmax())]
    return found, _power_iteration(span, found, 0)[1], False


def orient(points: torch.Tensor, gradients: torch.Tensor, directions: torch.Tensor, slope: float) -> torch.Tensor:
    """Choose the sign of each direction (B, D); the moment tensor is even and cannot.

    Flipping xᵢ swaps σ′ between 1 and ``slope`` on every unit, i.e. σ′(−t) = 1 + slope − σ′(t):
    a wrong sign shows up as a constant term (1 + slope)·zᵢ. So fit ∇g = Σᵢ σ′ẑᵢ + c by least
    squares and read c = Σᵢ βᵢẑᵢ: βᵢ ≈ −(1 + slope) for the flipped directions, 0 for the others
    (the constant is the order-0/1 information the even tensor lacks).
    """
    design = torch.cat([activation_slope(points @ directions.T, slope), torch.ones(len(points), 1, dtype=DTYPE)], 1)
    fit = torch.linalg.lstsq(design, gradients).solution
    beta = torch.linalg.lstsq(fit[:-1].T, fit[-1:].T).solution[:, 0]
    return directions * torch.where(beta < -(1 + slope) / 2, -1.0, 1.0).to(DTYPE)[:, None]


def refine(
    points: torch.Tensor, gradients: torch.Tensor, directions: torch.Tensor, slope: float, iterations: int,
    flips: int, deadline: Deadline,
) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
    """Fit ∇g(wⱼ) = Σᵢ σ′(wⱼᵀxᵢ) zᵢ: returns directions (B, D), zᵢ (B, D), iterations done, stopped.

    Each iteration predicts the pattern S from the directions, lets every unit flip up to
    ``flips`` entries of its row where that lowers its own residual (entries near a
    boundary are the ones a slightly wrong direction mispredicts), solves Z = S⁺∇g, and
    takes the new directions from Z (keeping each one's orientation). It stops when the
    pattern predicted by the new directions is the one just fitted (a fixed point).
    """
    pattern = activation_slope(points @ directions.T, slope)
    done, stopped = 0, False
    for done in range(1, iterations + 1):
        if deadline.expired():
            stopped, done = True, done - 1
            break
        weights = torch.linalg.lstsq(pattern, gradients).solution
        for _ in range(flips):
            residual = gradients - pattern @ weights
            step = torch.where(pattern == 1.0, slope - 1.0, 1.0 - slope)
            gain = step**2 * (weights * weights).sum(dim=1) - 2 * step * (residual @ weights.T)
            best, entry = gain.min(dim=1)
            rows = torch.nonzero(best < 0).flatten()
            if not len(rows):
                break
            pattern[rows, entry[rows]] += step[rows, entry[rows]]
        weights = torch.linalg.lstsq(pattern, gradients).solution
        orientation = torch.where((weights * directions).sum(dim=1) < 0, -1.0, 1.0).to(DTYPE)
        directions = weights * orientation[:, None] / weights.norm(dim=1, keepdim=True)
        predicted = activation_slope(points @ directions.T, slope)
        if torch.equal(predicted, pattern):
            break
        pattern = predicted
    weights = torch.linalg.lstsq(pattern, gradients).solution
    return directions, weights, done, stopped


def recover(
    points: torch.Tensor, values: torch.Tensor, gradients: torch.Tensor, batch_size: int, *, slope: float = 0.0,
    config: TensorConfig | None = None, deadline: Deadline | None = None,
) -> Recovery:
    """Recover the B inputs of g(w) = Σᵢ ρᵢσ(wᵀxᵢ) from M ≥ B query points w ~ N(0, I_D).

    ``points`` (M, D), ``values`` g(w) (M,), ``gradients`` ∇g(w) (M, D); σ is a (leaky) ReLU
    with negative slope ``slope``. Needs B ≤ D and inputs in general position. Returns unit
    directions (their sign included) and ρᵢ‖xᵢ‖; ReLU's homogeneity hides ‖xᵢ‖ itself.
    """
    config = config or TensorConfig()
    deadline = deadline or Budget(config.time_budget_s).deadline()
    points, values, gradients = points.to(DTYPE), values.to(DTYPE), gradients.to(DTYPE)
    generator = torch.Generator().manual_seed(config.seed)
    basis, span_gap = gradient_span(gradients, batch_size)
    moment = fourth_moment(points @ basis, gradients @ basis)
    span, tensor_gap = rank_one_span(moment, batch_size)
    components, scores, stopped = rank_one_components(span, generator, config.starts, config.power_steps, deadline)
    directions = orient(points, gradients, (basis @ components).T, slope)
    directions, weights, iterations, refine_stopped = refine(
        points, gradients, directions, slope, config.refinement_iterations, config.pattern_flips, deadline)
    pattern = activation_slope(points @ directions.T, slope)
    fitted_values = (pattern * (points @ weights.T)).sum(dim=1)  # σ(t) = σ′(t)·t for a (leaky) ReLU
    return Recovery(
        directions=directions, strengths=(weights * directions).sum(dim=1), span_gap=span_gap,
        tensor_gap=tensor_gap, decomposition_score=float(scores.min()),
        gradient_loss=float(((gradients - pattern @ weights) ** 2).sum() / (gradients**2).sum()),
        value_loss=float(((values - fitted_values) ** 2).sum() / (values**2).sum().clamp_min(1e-300)),
        refinement_iterations=iterations, stopped_by_budget=stopped or refine_stopped,
    )


@dataclass(frozen=True)
class Query:
    """The gradient of one update read as the paper's query (inputs x̃ = [x, s] when there is a bias)."""

    points: torch.Tensor
    values: torch.Tensor
    gradients: torch.Tensor
    output_direction: torch.Tensor
    """v: the output layer's rank-one factor (A ≈ σ₁ v aᵀ), which weighs the residuals ρᵢ = vᵀrᵢ / B."""
    bias_coordinate: float | None
    """s, the last input coordinate (None: no hidden bias, inputs are known up to scale only)."""
    rank_one_residual: float
    units: int


def read_query(update: ClientUpdate, model: ImageClassifier, min_output_weight: float) -> tuple[Query, float]:
    """The query points, g and ∇g of ``update`` for a one-hidden-layer MLP; also σ′'s negative slope.

    With output weights A = v aᵀ (rank one) and cross-entropy, ∂L/∂A[:, j] = (1/B) Σᵢ rᵢ σ(wⱼᵀxᵢ + bⱼ)
    and ∂L/∂wⱼ = aⱼ (1/B) Σᵢ (vᵀrᵢ) σ′(·) xᵢ, so g(wⱼ) = vᵀ ∂L/∂A[:, j] and ∇g(wⱼ) = ∂L/∂wⱼ / aⱼ
    with ρᵢ = vᵀrᵢ / B. An honest A is only approximately rank one (its residual is returned).
    A weight scale σ_w and bias scale σ_b are divided out so that the points are ≈ N(0, I):
    wⱼᵀx + bⱼ = σ_w · [wⱼ/σ_w, bⱼ/σ_b]ᵀ[x, σ_b/σ_w], whence s = σ_b/σ_w; g and ∇g are divided by σ_w
    too, so that they are those of Σᵢ ρᵢσ(pᵀx̃ᵢ) at the points p.
    """
    (hidden_name, hidden), (output_name, output) = _two_layers(model)
    slope = _negative_slope(model)
    gradient = update.pseudo_gradient()
    weight = update.global_weights[f"{hidden_name}.weight"].to(DTYPE)
    weight_grad = gradient[f"{hidden_name}.weight"].to(DTYPE)
    left, singular, right = torch.linalg.svd(update.global_weights[f"{output_name}.weight"].to(DTYPE))
    direction, unit_weights = left[:, 0], singular[0] * right[0]
    units = unit_weights.abs() >= min_output_weight * unit_weights.abs().max()
    weight_scale = float(weight.std())
    points = [weight[units] / weight_scale]
    gradients = [weight_grad[units]]
    bias_coordinate = None
    if hidden.bias is not None and float(update.global_weights[f"{hidden_name}.bias"].std()) > 0:
        bias = update.global_weights[f"{hidden_name}.bias"].to(DTYPE)
        bias_scale = float(bias.std())
        points.append(bias[units, None] / bias_scale)
        bias_coordinate = bias_scale / weight_scale
        gradients.append(bias_coordinate * gradient[f"{hidden_name}.bias"].to(DTYPE)[units, None])
    values = direction @ gradient[f"{output_name}.weight"].to(DTYPE)[:, units] / weight_scale
    query = Query(
        points=torch.cat(points, 1), values=values, gradients=torch.cat(gradients, 1) / unit_weights[units, None],
        output_direction=direction, bias_coordinate=bias_coordinate,
        rank_one_residual=float(singular[1:].norm() / singular.norm()), units=int(units.sum()),
    )
    return query, slope


def _two_layers(model: ImageClassifier) -> tuple[tuple[str, nn.Linear], tuple[str, nn.Linear]]:
    """The hidden and output layers of a one-hidden-layer MLP: two Linear layers, elementwise
    activations and reshapes, nothing else (no convolution, no normalisation, no pooling)."""
    layers = linear_layers(model)
    others = sorted({type(m).__name__ for m in model.body.modules() if not list(m.children())
                     and not isinstance(m, (nn.Linear, *ACTIVATIONS, *RESHAPES))})
    if others or len(layers) != 2:
        raise AttackNotApplicable(
            f"tensor needs a one-hidden-layer MLP; this model has {len(layers)} linear layer(s)"
            f"{' and ' + ', '.join(others) if others else ''}")
    return layers[0], layers[1]


def _negative_slope(model: ImageClassifier) -> float:
    activations = [m for m in model.body.modules() if isinstance(m, ACTIVATIONS)]
    if len(activations) != 1 or not isinstance(activations[0], (nn.ReLU, nn.LeakyReLU)):
        name = type(activations[0]).__name__ if activations else "no activation"
        raise AttackNotApplicable(f"tensor needs a (leaky) ReLU hidden layer (piecewise linear); this one has {name}")
    return float(activations[0].negative_slope) if isinstance(activations[0], nn.LeakyReLU) else 0.0


@ATTACKS.register("tensor")
class Tensor(Attack):
    Config = TensorConfig
    config: TensorConfig
    requires = frozenset({Requirement.GRADIENT, Requirement.RANDOM_QUERY})

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        query, slope = read_query(update, model, self.config.min_output_weight)
        batch_size = self.config.batch_size or update.metadata.batch_size
        if batch_size > min(query.units, query.points.shape[1]):
            raise AttackNotApplicable(
                f"tensor recovers at most min(width, input dimension) = {min(query.units, query.points.shape[1])} "
                f"inputs; the batch has {batch_size}")
        found = recover(query.points, query.values, query.gradients, batch_size, slope=slope, config=self.config,
                        deadline=deadline)
        inputs, misoriented = _inputs(found.directions, query.bias_coordinate)
        images = model.denormalize(inputs.float().view(-1, *model.image_shape)).clamp(0, 1)
        labels = None
        if query.bias_coordinate is not None:
            labels = _labels(model, inputs, found, query.output_direction, query.bias_coordinate, batch_size)
        return Reconstruction(
            images=images.detach(), labels=labels, seconds=deadline.elapsed,
            extras={
                "rank_one_residual": query.rank_one_residual, "units_used": query.units,
                "span_gap": found.span_gap, "tensor_gap": found.tensor_gap,
                "decomposition_score": found.decomposition_score, "gradient_loss": found.gradient_loss,
                "value_loss": found.value_loss, "refinement_iterations": found.refinement_iterations,
                "scale": "bias" if query.bias_coordinate is not None else "prior",
                "misoriented": misoriented, "stopped_by_budget": found.stopped_by_budget,
            },
        )


def _inputs(directions: torch.Tensor, bias_coordinate: float | None) -> tuple[torch.Tensor, int]:
    """Normalised inputs (B, d) from unit directions, and how many had a non-positive bias coordinate.

    With a bias, x̃ = [x, s] and the direction's last entry fixes the scale: x = s·u[:d]/u[d]
    (u[d] > 0 whenever the sign was found right). Without one, only directions are known: they
    are scaled to ‖x‖ = √d, the mean norm of inputs normalised per coordinate (a prior).
    """
    if bias_coordinate is None:
        return directions * math.sqrt(directions.shape[1]), 0
    last = directions[:, -1]
    misoriented = int((last <= 0).sum())
    return directions[:, :-1] * bias_coordinate / last.abs().clamp_min(1e-12)[:, None], misoriented


def _labels(model: ImageClassifier, inputs: torch.Tensor, found: Recovery, direction: torch.Tensor,
            bias_coordinate: float, batch_size: int) -> torch.Tensor:
    """Each input's label from its residual ρᵢ = vᵀ(pᵢ − e_yᵢ)/B: the class c with vᵀpᵢ − v_c closest to Bρᵢ.

    The recovered strength is ρᵢ‖x̃ᵢ‖ with ‖x̃ᵢ‖ = s/u[d]; pᵢ is the model's softmax at the
    recovered input. Distinct entries of v
    (the crafted query's choice) make every class identifiable.
    """
    with torch.no_grad():
        probabilities = torch.softmax(model.body(inputs.float().view(-1, *model.image_shape)).double(), dim=1)
    norms = bias_coordinate / found.directions[:, -1].abs().clamp_min(1e-12)
    residual = batch_size * found.strengths / norms
    candidates = (probabilities @ direction)[:, None] - direction[None, :]
    return (candidates - residual[:, None]).abs().argmin(dim=1)
