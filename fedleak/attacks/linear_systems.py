"""The layer-wise linear systems of a feed-forward chain (R-GAP, Zhu & Blaschko 2021, §3).

Shared by the ``linear`` attack and the leakage audit (:mod:`fedleak.adversary.audit`).

A supported network body is a chain x₀ → z₁ = W₁x₀ + b₁ → x₁ = σ₁(z₁) → … → z_L (the
logits) of Conv2d/Linear layers, elementwise activations and reshapes. For one sample
and one weighted layer z = W x + b, with k = ∂L/∂z the loss gradient at its output,

* the weight gradient is linear in the layer input x: ``∇W = k xᵀ`` for a Linear layer,
  ``∇W[o, r] = Σ_p k[o, p] x̃[r, p]`` for a convolution (x̃ = unfold(x): patch entry r at
  output position p) — R-GAP's gradient constraints (§3.2, eq. 7);
* the forward map is linear too: ``W x = z − b``, where z comes from the input of the
  layer above through σ⁻¹ — R-GAP's weight constraints (eq. 8, the convolution written
  as a sparse matrix).

Stacked, they form the layer's system ``A x = b``, solved by least squares in float64.

**Padding.** x is the *unpadded* input: a tap that reads zero padding adds nothing to
either block, so R-GAP's padding constraints (padded entries equal 0) hold by
construction and are not rows of A.

**Compression.** The gradient block has out·C·kh·kw rows but factorises per patch entry
r as ``k S_r x = g_r`` (S_r selects x̃[r, :]). With the reduced QR ``k = Q R`` (Q with
orthonormal columns, R with m = min(out, P) rows), ``‖k S_r x − g_r‖² = ‖R S_r x − Qᵀg_r‖²``
plus a constant, so m·C·kh·kw rows give the same least-squares solution and the same
rank. A Linear layer is the case P = 1: n rows ``‖k‖ x = Gᵀk / ‖k‖``.

**Scaling.** Each block is scaled to unit RMS row norm, so that neither kind of
constraint dominates by its units alone. For a consistent full-rank system the
solution does not depend on it; it makes rank and condition number comparable
across layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from fedleak.models import ImageClassifier

if TYPE_CHECKING:  # SciPy is imported where a system is built or solved: validating a scenario needs none
    import scipy.sparse

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh)
RESHAPES = (nn.Flatten, nn.Identity)
RELU_ACTIVE = 1e-6
"""A ReLU unit counts as active when its recovered output exceeds this fraction of the
largest output: recovered zeros carry round-off of either sign."""
DEFAULT_RCOND = 1e-5
"""Singular values below this fraction of the largest count as zero. The spectrum comes
from AᵀA, whose round-off (≈ n·ε·λ_max) puts exact zeros near 1e-7·σ_max; 1e-5 keeps
a safe margin above that."""
SATURATION = 1e-12
"""Recovered sigmoid/tanh outputs are clipped this far inside their range before σ⁻¹."""


one_blas_thread = threadpool_limits.wrap(limits=1, user_api="blas")
"""Decorates every entry point into this module's numpy/scipy work (the audit, the
``linear`` attack). numpy's OpenBLAS thread pool has been seen to spin forever in
``exec_blas`` when called from the Flower simulation's server thread, beside Ray and
torch's pools: in the eigensolver and, in a later run of the same process, in a plain
vector norm. One BLAS thread bypasses that pool; the dense work here is O(n³) on n ≤ a
few thousand unknowns."""


class UnsupportedArchitecture(ValueError):
    """The model is not a chain of Conv2d/Linear layers, elementwise activations and reshapes."""


@dataclass(frozen=True)
class Stage:
    """One weighted layer of the chain and the activation after it (``None``: identity)."""

    name: str
    """Qualified module name in the body (``features.0``), as in the state dict: gradients are ``{name}.weight``."""
    layer: nn.Conv2d | nn.Linear
    activation: nn.Module | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    position: int
    """Index of ``layer`` in :attr:`Chain.modules`."""

    @property
    def unknowns(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_channels(self) -> int:
        return self.out_shape[0]

    @property
    def positions(self) -> int:
        """Output positions P (1 for a Linear layer)."""
        return math.prod(self.out_shape[1:])

    @property
    def kind(self) -> str:
        return "conv" if isinstance(self.layer, nn.Conv2d) else "linear"

    def weight_matrix(self) -> torch.Tensor:
        """W as (out, C·kh·kw) in float64."""
        return self.layer.weight.detach().double().reshape(self.out_channels, -1)

    def bias(self) -> torch.Tensor:
        """b broadcast to (out, P) in float64 (zeros without a bias)."""
        if self.layer.bias is None:
            return torch.zeros(self.out_channels, self.positions, dtype=torch.float64)
        return self.layer.bias.detach().double()[:, None].expand(-1, self.positions)


@dataclass(frozen=True)
class Chain:
    """The body's leaf modules in call order, and its weighted stages input to output."""

    modules: list[nn.Module]
    stages: list[Stage]

    def forward_from(self, stage: Stage, inputs: torch.Tensor) -> torch.Tensor:
        """Run the chain from ``stage``'s layer to the logits on ``inputs`` (a batch of layer inputs)."""
        for module in self.modules[stage.position:]:
            inputs = module(inputs)
        return inputs


def model_chain(model: ImageClassifier) -> Chain:
    """Trace ``model.body`` on a seeded random probe and check that it is a supported chain.

    The body runs once, so pass a copy in eval mode (BatchNorm would update its running
    statistics in train mode; a BatchNorm layer is not supported anyway). Replaying the
    recorded modules one after the other must give the body's logits: an in-place skip
    connection (``x += identity``) or a functional operation between modules would
    otherwise pass for a chain.

    Raises:
        UnsupportedArchitecture: a module of another kind, a branch or reuse, an
            activation before the first or after the last weighted layer.
    """
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    leaves = [(name, m) for name, m in model.body.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o, name=name: calls.append((name, m, i[0], o))) for name, m in leaves]
    dtype = next(model.parameters()).dtype
    probe = torch.rand(1, *model.image_shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    previous = probe.clone()  # the body's input; ``probe`` stays intact for the replay
    try:
        with torch.no_grad():
            logits = model.body(previous)
    finally:
        for hook in hooks:
            hook.remove()
    for name, _, inputs, output in calls:
        if inputs is not previous:
            raise UnsupportedArchitecture(f"{name} does not take the previous module's output (not a plain chain)")
        previous = output
    if not calls or calls[-1][3] is not logits or len({id(m) for _, m, _, _ in calls}) != len(calls):
        raise UnsupportedArchitecture("the body is not a chain of modules each called once")
    chain = Chain([m for _, m, _, _ in calls], _stages(calls))
    replayed = probe
    with torch.no_grad():
        for module in chain.modules:
            replayed = module(replayed)
    if not torch.allclose(replayed, logits, rtol=1e-4, atol=1e-6):
        raise UnsupportedArchitecture("running the body's modules one after the other does not give its logits "
                                      "(a skip connection or an operation outside modules)")
    return chain


def _stages(calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]) -> list[Stage]:
    stages: list[Stage] = []
    activation: nn.Module | None = None
    for position, (name, module, inputs, output) in enumerate(calls):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if stages:
                stages[-1] = _with_activation(stages[-1], activation)
            activation = None
            _check_layer(name, module, inputs)
            stages.append(Stage(name, module, None, tuple(inputs.shape[1:]), tuple(output.shape[1:]), position))
        elif isinstance(module, ACTIVATIONS):
            if not stages or activation is not None:
                raise UnsupportedArchitecture(f"{name}: an activation must follow a weighted layer (one per layer)")
            activation = module
        elif not isinstance(module, RESHAPES):
            raise UnsupportedArchitecture(
                f"{name}: {type(module).__name__} is not supported (only Conv2d, Linear, "
                "ReLU/LeakyReLU/Sigmoid/Tanh and Flatten)")
    if not stages:
        raise UnsupportedArchitecture("the model has no Conv2d or Linear layer")
    if activation is not None or stages[-1].kind != "linear":
        raise UnsupportedArchitecture("the last module must be a Linear layer producing the logits")
    return stages


def _with_activation(stage: Stage, activation: nn.Module | None) -> Stage:
    return Stage(stage.name, stage.layer, activation, stage.in_shape, stage.out_shape, stage.position)


def _check_layer(name: str, layer: nn.Module, inputs: torch.Tensor) -> None:
    if isinstance(layer, nn.Linear) and inputs.ndim != 2:
        raise UnsupportedArchitecture(f"{name}: a Linear layer must see flat inputs")
    if isinstance(layer, nn.Conv2d) and (
        layer.groups != 1 or layer.padding_mode != "zeros" or isinstance(layer.padding, str)
    ):
        raise UnsupportedArchitecture(f"{name}: only ungrouped convolutions with numeric zero padding are supported")


def patch_index(stage: Stage) -> torch.Tensor:
    """(C·kh·kw, P): the entry of the flat unpadded input each tap reads at each output position; −1 = padding."""
    if isinstance(stage.layer, nn.Linear):
        return torch.arange(stage.unknowns)[:, None]
    conv = stage.layer
    numbered = torch.arange(1, stage.unknowns + 1, dtype=torch.float64).view(1, *stage.in_shape)
    padding = conv.padding
    assert not isinstance(padding, str)  # 'same'/'valid': rejected when the chain is traced
    taps = F.unfold(numbered, conv.kernel_size, dilation=conv.dilation, padding=padding, stride=conv.stride)
    return taps[0].round().long() - 1


def forward_block(stage: Stage) -> scipy.sparse.csr_matrix:
    """The forward map x ↦ W x (before the bias) as an (out·P, n) sparse matrix, rows ordered like z.flatten()."""
    index = patch_index(stage)
    taps, positions = (index >= 0).nonzero(as_tuple=True)
    weight = stage.weight_matrix()
    rows = torch.arange(stage.out_channels)[:, None] * stage.positions + positions[None, :]
    cols = index[taps, positions].expand_as(rows)
    values = weight[:, taps]
    return _sparse(values, rows, cols, (stage.out_channels * stage.positions, stage.unknowns))


def gradient_block(stage: Stage, k: torch.Tensor, weight_grad: torch.Tensor) -> tuple[scipy.sparse.csr_matrix,
                                                                                      np.ndarray]:
    """The compressed gradient constraints (module docstring) for output gradient ``k`` (out, P).

    ``weight_grad`` is the observed ∂L/∂W as (out, C·kh·kw). Returns (A_g, b_g).
    """
    q, r = torch.linalg.qr(k.double(), mode="reduced")
    index = patch_index(stage)
    taps, positions = (index >= 0).nonzero(as_tuple=True)
    rows = torch.arange(r.shape[0])[:, None] * index.shape[0] + taps[None, :]
    cols = index[taps, positions].expand_as(rows)
    values = r[:, positions]
    matrix = _sparse(values, rows, cols, (r.shape[0] * index.shape[0], stage.unknowns))
    return matrix, (q.T @ weight_grad.double()).reshape(-1).numpy()


def _sparse(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
            shape: tuple[int, int]) -> scipy.sparse.csr_matrix:
    import scipy.sparse

    return scipy.sparse.coo_matrix(
        (values.reshape(-1).numpy(), (rows.reshape(-1).numpy(), cols.reshape(-1).numpy())), shape=shape).tocsr()


@dataclass(frozen=True)
class LayerSystem:
    """A x = b over one layer's unpadded input, blocks scaled to unit RMS row norm."""

    matrix: scipy.sparse.csr_matrix
    rhs: np.ndarray

    @property
    def unknowns(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def constraints(self) -> int:
        return int(self.matrix.shape[0])


def layer_system(stage: Stage, k: torch.Tensor, weight_grad: torch.Tensor,
                 forward_rhs: torch.Tensor | None = None, known: torch.Tensor | None = None) -> LayerSystem:
    """Stack the gradient block and, when the layer's output is known, the forward block.

    ``k``: ∂L/∂z as (out, P). ``forward_rhs``: z − b as (out, P), or ``None`` at the output
    layer, whose z is unknown. ``known``: which entries of z are determined (ReLU: the
    active units); all when ``None``.
    """
    import scipy.sparse

    blocks = [gradient_block(stage, k, weight_grad)]
    if forward_rhs is not None:
        rows = np.flatnonzero(known.reshape(-1).numpy()) if known is not None else slice(None)
        blocks.append((forward_block(stage)[rows], forward_rhs.double().reshape(-1).numpy()[rows]))
    scaled = [_unit_rms_rows(matrix, rhs) for matrix, rhs in blocks if matrix.shape[0]]
    return LayerSystem(scipy.sparse.vstack([m for m, _ in scaled]).tocsr(), np.concatenate([b for _, b in scaled]))


def _unit_rms_rows(matrix: scipy.sparse.csr_matrix, rhs: np.ndarray) -> tuple[scipy.sparse.csr_matrix, np.ndarray]:
    import scipy.sparse.linalg

    norm = scipy.sparse.linalg.norm(matrix)
    scale = math.sqrt(matrix.shape[0]) / norm if norm > 0 else 1.0
    return matrix * scale, rhs * scale


@dataclass(frozen=True)
class Spectrum:
    """Singular values of A (from the Gram matrix AᵀA, descending) and what they imply."""

    singular_values: np.ndarray
    rank: int
    condition: float
    """σ_max / σ_min; ``inf`` when rank-deficient."""


def spectrum(system: LayerSystem, rcond: float) -> Spectrum:
    """Numerical rank (σ > rcond·σ_max) and condition number of the system.

    Computed from AᵀA (n × n, dense), which is cheap for the sparse blocks but squares
    the condition number: in float64, σ_min/σ_max below ~1e-7 is not resolved, so
    ``rcond`` should stay above that.
    """
    return _spectrum(np.linalg.eigvalsh(_gram(system)), rcond)


def _gram(system: LayerSystem) -> np.ndarray:
    return np.asarray((system.matrix.T @ system.matrix).toarray())


def _spectrum(eigenvalues: np.ndarray, rcond: float) -> Spectrum:
    singular = np.sqrt(np.clip(eigenvalues[::-1], 0, None))
    rank = int((singular > rcond * singular[0]).sum()) if singular[0] > 0 else 0
    condition = float(singular[0] / singular[-1]) if rank == len(singular) else math.inf
    return Spectrum(singular, rank, condition)


@dataclass(frozen=True)
class Solution:
    x: np.ndarray
    spectrum: Spectrum
    residual: float
    """‖A x − b‖ / ‖b‖."""


def solve(system: LayerSystem, rcond: float) -> Solution:
    """Least squares via the normal equations in float64.

    Full rank: Cholesky, with one step of iterative refinement (the Gram matrix squares
    the condition number; one refinement recovers most of the lost digits).
    Rank-deficient: the minimum-norm solution over the singular directions above
    ``rcond`` (what ``lstsq`` returns), so directions no constraint sees stay 0.
    """
    gram, a, b = _gram(system), system.matrix, system.rhs
    found = _spectrum(np.linalg.eigvalsh(gram), rcond)
    x = _cholesky_solution(gram, a, b) if found.rank == system.unknowns else None
    if x is None:
        eigenvalues, vectors = np.linalg.eigh(gram)
        kept = eigenvalues > (rcond * found.singular_values[0]) ** 2
        x = vectors[:, kept] @ ((vectors[:, kept].T @ (a.T @ b)) / eigenvalues[kept])
    residual = float(np.linalg.norm(a @ x - b)) / max(float(np.linalg.norm(b)), 1e-300)
    return Solution(x, found, residual)


def _cholesky_solution(gram: np.ndarray, a: scipy.sparse.csr_matrix, b: np.ndarray) -> np.ndarray | None:
    import scipy.linalg

    try:
        factor = scipy.linalg.cho_factor(gram)
    except np.linalg.LinAlgError:  # numerically indefinite despite the rank test: take the eigen path
        return None
    x = scipy.linalg.cho_solve(factor, a.T @ b)
    return np.asarray(x + scipy.linalg.cho_solve(factor, a.T @ (b - a @ x)))


def preactivation(activation: nn.Module | None, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z = σ⁻¹(a) for recovered activation outputs a, and the mask of entries it determines.

    LeakyReLU, sigmoid and tanh are invertible (R-GAP §3.1); a ReLU determines z only
    where it is active, and z of an inactive unit is reported as 0 (its derivative is 0).
    """
    every = torch.ones_like(outputs, dtype=torch.bool)
    if activation is None or isinstance(activation, nn.Identity):
        return outputs, every
    if isinstance(activation, nn.LeakyReLU):
        return torch.where(outputs >= 0, outputs, outputs / activation.negative_slope), every
    if isinstance(activation, nn.ReLU):
        active = outputs > RELU_ACTIVE * outputs.abs().max()
        return torch.where(active, outputs, torch.zeros_like(outputs)), active
    if isinstance(activation, nn.Sigmoid):
        clipped = outputs.clamp(SATURATION, 1 - SATURATION)
        return torch.log(clipped) - torch.log1p(-clipped), every
    if isinstance(activation, nn.Tanh):
        return torch.atanh(outputs.clamp(-1 + SATURATION, 1 - SATURATION)), every
    raise UnsupportedArchitecture(f"no inverse for {type(activation).__name__}")


def derivative(activation: nn.Module | None, z: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """σ′(z), with 0 where z is not determined (inactive ReLU units)."""
    if activation is None or isinstance(activation, nn.Identity):
        slope = torch.ones_like(z)
    elif isinstance(activation, nn.LeakyReLU):
        slope = torch.where(z >= 0, torch.ones_like(z), torch.full_like(z, activation.negative_slope))
    elif isinstance(activation, nn.ReLU):
        slope = (z > 0).to(z.dtype)
    elif isinstance(activation, nn.Sigmoid):
        slope = torch.sigmoid(z) * (1 - torch.sigmoid(z))
    else:
        slope = 1 - torch.tanh(z) ** 2
    return slope * known


def backpropagate(stage: Stage, k: torch.Tensor) -> torch.Tensor:
    """Wᵀk: ∂L/∂x for the layer's (flattened, unpadded) input, given k = ∂L/∂z as (out, P)."""
    return torch.from_numpy(forward_block(stage).T @ k.double().reshape(-1).numpy())
