"""Layer-wise linear-system reconstruction: R-GAP with Chen & Campbell's corrections.

R-GAP (Zhu & Blaschko, ICLR 2021, §3): for one sample, every weighted layer's input is the
solution of a linear system built from its weight gradient, its forward weights and
the output recovered for the layer above (:mod:`fedleak.attacks.linear_systems`). The
recursion starts at the output layer and walks down to the image:

1. **Output layer** (logits z = W x [+ b], cross-entropy, so k = ∂L/∂z = softmax(z) − e_y).
   With a bias, ∇b = k: the label is the one negative entry and x = Σ_o k_o ∇W_o / ‖k‖²
   (the closed form ∇W_o / ∇b_o of every row, least-squares averaged). Without a bias
   ∇W = k xᵀ is rank one: its top singular pair gives k ∝ u and x ∝ v, the label is
   the entry of u with the odd sign, and the scale α of k = α u is the one for which
   softmax(W x) − e_y = α u holds (a 1-D solve; R-GAP §3.1 solves the same consistency
   for its logistic output).
2. **Downward**, layer i below a layer whose input x_{i+1} is known: z_i = σ⁻¹(x_{i+1})
   where σ is invertible (for a ReLU only the active units), k_i = (W_{i+1}ᵀ k_{i+1}) ⊙ σ′(z_i),
   and x_i solves [gradient constraints; W_i x_i = z_i − b_i] by least squares.
3. **Correction** (Chen & Campbell, BMVC 2022, §3): starting from the least-squares
   solution, x_i is refined by gradient matching over the sub-network above it — the
   cosine distance between the gradients of layers i…L at input x_i (label y) and the
   observed ones, plus λ·‖A x_i − b‖²/‖b‖² (the layer's system) and, at the image layer,
   total variation. The iterate with the lowest objective is kept, so a correction
   never makes the objective worse than the R-GAP solution it starts from.
   ``correction_iterations = 0`` is pure R-GAP. The paper corrects every layer; by
   default we correct only layers whose system is rank-deficient (``correct_full_rank``
   restores the paper's schedule): a full-rank layer's least-squares solution already
   meets its constraints to round-off, and on MNIST correcting it changed no image
   while costing ~17× the time (2 images: 159 s instead of 9.6 s each, identical PSNR).

Batch size 1 (FedSGD's gradient; a FedAvg update through its pseudo-gradient), label
unknown. The time budget applies to the corrections; the closed-form recursion always
completes (the image layer is the last step). Nothing is random, so ``seed`` has no
effect. Extras: how the label was found (``bias`` | ``rank_one``), the output scale
fit's residual, per layer (input to output) its unknowns, constraint rows, rank,
condition number (``None`` = infinite), relative residual and correction steps, and the
correction steps done/planned and whether the budget stopped them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from fedleak.attacks.base import ATTACKS, Attack, AttackConfig, AttackNotApplicable, Budget, Deadline, Reconstruction
from fedleak.attacks.linear_systems import (
    DEFAULT_RCOND,
    Chain,
    LayerSystem,
    Stage,
    UnsupportedArchitecture,
    backpropagate,
    derivative,
    layer_system,
    model_chain,
    one_blas_thread,
    preactivation,
    solve,
)
from fedleak.attacks.objectives import cosine_distance, total_variation
from fedleak.core.updates import ClientUpdate, Weights
from fedleak.models import ImageClassifier


class LinearConfig(AttackConfig):
    correction_iterations: int = Field(400, ge=0)
    """Chen & Campbell's gradient-matching steps (Adam) per layer; 0 = pure R-GAP."""
    correction_lr: float = Field(2e-2, gt=0)
    """Adam step size, relative to the RMS of the layer input being corrected."""
    residual_weight: float = Field(1.0, ge=0)
    """λ of the system residual ‖A x − b‖² / ‖b‖² in the correction objective."""
    tv_weight: float = Field(1e-2, ge=0)
    """Total variation weight at the image layer (normalised image)."""
    correct_full_rank: bool = False
    """Also correct layers whose system has full rank (the paper corrects every layer). Their
    least-squares solution already meets the constraints to round-off, so correcting them
    costs time and, in our measurements, changes nothing."""
    rcond: float = Field(DEFAULT_RCOND, gt=0, lt=1)
    """Singular values below rcond·σ_max count as zero (rank and the least-squares solution)."""
    max_unknowns: int = Field(8192, ge=1)
    """Refuse layers with more inputs than this (each solve factors a dense n × n Gram matrix)."""


@dataclass
class _Observed:
    """The observed gradient per stage, float64: weight as (out, C·kh·kw), bias or None."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor | None]
    parameters: dict[str, torch.Tensor]


@ATTACKS.register("linear")
class Linear(Attack):
    Config = LinearConfig
    config: LinearConfig

    @one_blas_thread
    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        if update.metadata.batch_size != 1 or update.metadata.num_examples != 1:
            raise AttackNotApplicable(f"linear needs a single training image; this update used "
                                      f"{update.metadata.num_examples} (batch {update.metadata.batch_size})")
        model = copy.deepcopy(model).double().eval()
        try:
            chain = model_chain(model)
        except UnsupportedArchitecture as error:
            raise AttackNotApplicable(f"linear: {error}") from None
        too_large = [s.name for s in chain.stages if s.unknowns > self.config.max_unknowns]
        if too_large:
            raise AttackNotApplicable(f"linear: layers {', '.join(too_large)} have more than "
                                      f"{self.config.max_unknowns} inputs (max_unknowns)")
        observed = _observed(update.pseudo_gradient(), chain)
        k, label, label_from, scale_residual = self._output_gradient(chain.stages[-1], observed)
        x, layers = self._recurse(chain, observed, k, label, deadline)
        images = model.denormalize(x.view(1, *model.image_shape)).clamp(0, 1).float()
        iterations = sum(layer["correction_steps"] for layer in layers)
        planned = self.config.correction_iterations * sum(layer["corrected"] for layer in layers)
        return Reconstruction(
            images=images.detach(), labels=torch.tensor([label]), seconds=deadline.elapsed,
            extras={"label_from": label_from, "output_scale_residual": scale_residual, "layers": layers,
                    "iterations": iterations, "iterations_planned": planned,
                    "stopped_by_budget": iterations < planned},
        )

    def _output_gradient(self, stage: Stage, observed: _Observed) -> tuple[torch.Tensor, int, str, float | None]:
        """k = ∂L/∂logits (out, 1), the label, how they were found, and the scale fit's residual."""
        bias = observed.biases[-1]
        if bias is not None:
            return bias[:, None], int(bias.argmin()), "bias", None
        k, label, residual = _rank_one_output(observed.weights[-1], stage.weight_matrix())
        return k[:, None], label, "rank_one", residual

    def _recurse(self, chain: Chain, observed: _Observed, k: torch.Tensor, label: int,
                 deadline: Deadline) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """Solve layer by layer from the output down; returns the body input and per-layer reports.

        A layer is corrected when its system is rank-deficient (or always, with
        ``correct_full_rank``); only the deadline cuts a correction short.
        """
        forward_rhs: torch.Tensor | None = None
        known: torch.Tensor | None = None
        layers: list[dict[str, Any]] = []
        for index in range(len(chain.stages) - 1, -1, -1):
            stage = chain.stages[index]
            system = layer_system(stage, k, observed.weights[index], forward_rhs, known)
            solution = solve(system, self.config.rcond)
            x = torch.from_numpy(solution.x)
            steps = 0
            corrected = self.config.correction_iterations > 0 and (
                solution.spectrum.rank < stage.unknowns or self.config.correct_full_rank)
            if corrected:
                x, steps = self._correct(chain, index, x, system, observed, label, deadline)
            layers.append({"name": stage.name, "unknowns": stage.unknowns, "constraints": system.constraints,
                           "rank": solution.spectrum.rank, "condition": _finite(solution.spectrum.condition),
                           "residual": solution.residual, "corrected": corrected, "correction_steps": steps})
            if index:
                below = chain.stages[index - 1]
                z, known = preactivation(below.activation, x.view(below.out_channels, below.positions))
                k = derivative(below.activation, z, known) * backpropagate(stage, k).view_as(z)
                forward_rhs = z - below.bias()
        return x, layers[::-1]

    def _correct(self, chain: Chain, index: int, start: torch.Tensor, system: LayerSystem, observed: _Observed,
                 label: int, deadline: Deadline) -> tuple[torch.Tensor, int]:
        """Chen & Campbell's correction of one layer input; returns the best iterate and the steps taken."""
        stage = chain.stages[index]
        named = _named_parameters(chain, index)
        parameters = [p for _, p in named]
        targets = [observed.parameters[n] for n, _ in named]
        matrix = _torch_sparse(system)
        rhs = torch.from_numpy(system.rhs)
        rhs_norm = rhs.pow(2).sum().clamp_min(1e-300)
        target = torch.tensor([label])
        is_image = index == 0

        def objective(x: torch.Tensor) -> torch.Tensor:
            logits = chain.forward_from(stage, x.view(1, *stage.in_shape))
            grads = torch.autograd.grad(F.cross_entropy(logits, target), parameters, create_graph=True)
            value = cosine_distance(list(grads), targets)
            value = value + self.config.residual_weight * (matrix @ x - rhs).pow(2).sum() / rhs_norm
            if is_image and self.config.tv_weight:
                value = value + self.config.tv_weight * total_variation(x.view(1, *stage.in_shape))
            return value

        x = start.clone().requires_grad_(True)
        scale = float(start.pow(2).mean().sqrt()) or 1.0
        optimizer = torch.optim.Adam([x], lr=self.config.correction_lr * scale)
        best, best_value, steps = start.clone(), math.inf, 0
        for _ in range(self.config.correction_iterations):
            if deadline.expired():
                break
            optimizer.zero_grad()
            value = objective(x)
            if value.item() < best_value:
                best, best_value = x.detach().clone(), value.item()
            value.backward()
            optimizer.step()
            steps += 1
        return best, steps


def _rank_one_output(weight_grad: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, int, float]:
    """k = softmax(z) − e_y from a bias-free output layer's ∇W = k xᵀ: (k, y, relative residual of the fit).

    ∇W = σ u vᵀ fixes k = α u and x = (σ/α) v up to α > 0 once u is oriented so that its
    one negative entry is the label's (the others are probabilities). α then solves
    softmax((σ/α) W v) − e_y = α u; since |k_y| = 1 − p_y ≤ 1, α ∈ (0, 1/|u_y|]. A log-grid
    search finds the basin and Gauss–Newton (zero residual at the truth) polishes it. The
    residual returned is ‖(softmax − e_y)/α − u‖ (‖u‖ = 1).
    """
    u_all, s_all, v_all = torch.linalg.svd(weight_grad.double(), full_matrices=False)
    u, sigma, direction = u_all[:, 0], float(s_all[0]), weight.double() @ v_all[0]
    if int((u < 0).sum()) > len(u) // 2:
        u = -u
        direction = -direction
    label = int(u.argmin())
    onehot = F.one_hot(torch.tensor(label), len(u)).double()

    def residual(log_alpha: np.ndarray) -> np.ndarray:
        # Relative to k's scale: an absolute residual would vanish trivially as α → 0.
        alpha = math.exp(float(log_alpha[0]))
        values: np.ndarray = ((torch.softmax(sigma / alpha * direction, 0) - onehot) / alpha - u).numpy()
        return values

    upper = -math.log(float(-u[label]))
    grid = np.linspace(upper - 40, upper, 801)
    start = grid[int(np.argmin([np.linalg.norm(residual(np.array([g]))) for g in grid]))]
    import scipy.optimize  # SciPy only when an output layer without bias is solved

    fit = scipy.optimize.least_squares(residual, [start], bounds=([upper - 60], [upper]), xtol=1e-15, ftol=1e-15)
    alpha = math.exp(float(fit.x[0]))
    return alpha * u, label, float(np.linalg.norm(fit.fun))


def _observed(gradient: Weights, chain: Chain) -> _Observed:
    weights = [gradient[f"{s.name}.weight"].double().reshape(s.out_channels, -1) for s in chain.stages]
    biases = [gradient[f"{s.name}.bias"].double() if s.layer.bias is not None else None for s in chain.stages]
    return _Observed(weights, biases, {name: g.double() for name, g in gradient.items()})


def _named_parameters(chain: Chain, index: int) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters of stages index…L by state_dict name (all the sub-network above the layer input has)."""
    return [(f"{s.name}.{n}", p) for s in chain.stages[index:] for n, p in s.layer.named_parameters()]


def _torch_sparse(system: LayerSystem) -> torch.Tensor:
    matrix = system.matrix.tocoo()
    indices = torch.from_numpy(np.vstack([matrix.row, matrix.col])).long()
    return torch.sparse_coo_tensor(indices, torch.from_numpy(matrix.data), matrix.shape, check_invariants=False)


def _finite(value: float) -> float | None:
    """JSON-able: ``None`` for an infinite condition number (a rank-deficient system)."""
    return value if math.isfinite(value) else None
