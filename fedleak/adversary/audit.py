"""Leakage audit from the architecture alone: how much of one input do the layer-wise systems determine?

For every weighted layer of a supported chain (:mod:`fedleak.attacks.linear_systems`, the
systems the ``linear`` attack solves) the audit reports

* **unknowns** n: the entries of the layer's (unpadded) input;
* **constraints**: rows of the layer's system after the exact compression of its gradient
  block — min(out, P)·C·kh·kw gradient rows plus one forward row per determined output
  unit (all of them behind an invertible activation, the active ones behind a ReLU; the
  output layer has no forward rows, its logits are unknown);
* **rank**: the numerical rank (singular values above ``rcond``·σ_max) and **deficiency**
  n − rank: the dimension of the layer inputs that fit the gradient equally well;
* **condition**: σ_max/σ_min of the system (``None`` when deficient, i.e. infinite).

The systems depend on the output gradients k and on which ReLU units are active, i.e. on
the input. They are evaluated at a seeded random probe — an image ~ U(0, 1) and a random
label — never at client data; ranks at such a generic point are the generic ranks.
Layers with more than ``max_unknowns`` inputs are not factored (a dense n × n Gram
matrix): their rank is ``None`` and their deficiency the counting bound
max(0, n − constraints), so the index is then a lower bound (``exact = False``).

**Risk index** (0 = fully recoverable, 1 = nothing determined)::

    risk = Σ_d w_d · deficiency_d / unknowns_d  /  Σ_d w_d,     w_d = depth_decay^d,

with d = 0 for the layer that reads the image and d growing toward the output. It is 0
exactly when every layer's system has full rank, i.e. when R-GAP recovers the input
up to round-off: the highest leakage. As in R-GAP's rank analysis (Zhu & Blaschko 2021,
§4) a larger index means a safer architecture. Deficiency near the input weighs most
because there it is lost image content outright, whereas a deficiency higher up only
corrupts the forward constraints handed down, and every layer below still has its own
gradient constraints (and Chen & Campbell's corrections) to recover from it. With the
default decay 0.5 each layer counts half as much as the one below it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from rich.table import Table

from fedleak.attacks.linear_systems import (
    DEFAULT_RCOND,
    Chain,
    Stage,
    UnsupportedArchitecture,
    layer_system,
    model_chain,
    one_blas_thread,
    preactivation,
    spectrum,
)
from fedleak.core.config import MAX_PARAMETERS
from fedleak.core.errors import FedleakError, first_line
from fedleak.models import ImageClassifier, ModelSpec


@dataclass(frozen=True)
class LayerAudit:
    name: str
    kind: str
    """``conv`` or ``linear``."""
    unknowns: int
    constraints: int
    rank: int | None
    """``None``: too large to factor (see ``max_unknowns``)."""
    deficiency: int
    condition: float | None
    """σ_max/σ_min; ``None`` when infinite (rank-deficient) or not factored."""


@dataclass(frozen=True)
class ModelAudit:
    """Plain data: ``dataclasses.asdict`` of it is JSON-able (no infinities)."""

    layers: list[LayerAudit]
    risk_index: float
    exact: bool
    """False when some layer was too large to factor (the index is then a lower bound)."""
    depth_decay: float
    probe_seed: int
    rcond: float


def check_auditable(spec: ModelSpec, seed: int = 0) -> None:
    """Refuse a model larger than a run may use, counted on PyTorch's ``meta`` device (shapes, no
    memory) before it is built for real: the audit holds several float64 copies of it, and a
    mistyped class count (10⁸ classes: 25.6 GB for one float32 copy) must not reach the allocator.

    Raises:
        FedleakError: more than :data:`~fedleak.core.config.MAX_PARAMETERS` parameters, or a model that
            cannot be built at this size (one line).
    """
    try:
        size = spec.parameter_count(seed)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        raise FedleakError(f"audit: {spec.name} cannot be built for {'×'.join(map(str, spec.image_shape))} images: "
                           f"{first_line(error)}") from None
    if size > MAX_PARAMETERS:
        raise FedleakError(f"audit: {spec.name} on {'×'.join(map(str, spec.image_shape))} images with "
                           f"{spec.num_classes:,} classes: {size:,} parameters; at most {MAX_PARAMETERS:,}")


@one_blas_thread
def audit_model(model: ImageClassifier, probe_seed: int = 0, depth_decay: float = 0.5,
                rcond: float = DEFAULT_RCOND, max_unknowns: int = 4096) -> ModelAudit:
    """Rank analysis of every layer of ``model`` at a seeded random probe (no client data).

    Raises:
        UnsupportedArchitecture: the model is not a chain the linear systems describe.
    """
    model = copy.deepcopy(model).double().eval()
    chain = model_chain(model)
    probe = _probe_pass(model, chain, probe_seed)
    layers = []
    for index, (stage, (z, k, known)) in enumerate(zip(chain.stages, probe)):
        forward = index < len(chain.stages) - 1  # the output layer's logits are unknown: no forward rows
        constraints = _gradient_rows(stage) + (int(known.sum()) if forward else 0)
        if stage.unknowns > max_unknowns:
            layers.append(LayerAudit(stage.name, stage.kind, stage.unknowns, constraints, None,
                                     max(0, stage.unknowns - constraints), None))
            continue
        gradient = stage.layer.weight.grad
        assert gradient is not None  # filled by the probe pass
        system = layer_system(stage, k, gradient.reshape(stage.out_channels, -1),
                              z - stage.bias() if forward else None, known if forward else None)
        found = spectrum(system, rcond)
        layers.append(LayerAudit(stage.name, stage.kind, stage.unknowns, system.constraints, found.rank,
                                 stage.unknowns - found.rank,
                                 found.condition if math.isfinite(found.condition) else None))
    return ModelAudit(layers, risk_index(layers, depth_decay), all(layer.rank is not None for layer in layers),
                      depth_decay, probe_seed, rcond)


def stored_audit(model: ImageClassifier, probe_seed: int = 0) -> tuple[float | None, dict[str, Any]]:
    """What a run stores: the risk index and the audit as plain data, or ``None`` and why not."""
    try:
        audit = audit_model(model, probe_seed)
    except UnsupportedArchitecture as error:
        return None, {"unsupported": str(error)}
    return audit.risk_index, dataclasses.asdict(audit)


def risk_index(layers: list[LayerAudit], depth_decay: float) -> float:
    """Relative deficiency per layer, weighted depth_decay^d from the input (module docstring)."""
    weights = [depth_decay**depth for depth in range(len(layers))]
    lost = sum(w * layer.deficiency / layer.unknowns for w, layer in zip(weights, layers))
    return lost / sum(weights)


def _gradient_rows(stage: Stage) -> int:
    taps = stage.layer.weight[0].numel()
    return min(stage.out_channels, stage.positions) * taps


def _probe_pass(
    model: ImageClassifier, chain: Chain, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(z, k = ∂L/∂z, determined units) of every stage at a random image and label; fills weight grads."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, *model.image_shape, generator=generator, dtype=torch.float64)
    label = torch.randint(model.num_classes, (1,), generator=generator)
    starts = {stage.position for stage in chain.stages}
    outputs = []
    hidden = model.normalize(image)
    for position, module in enumerate(chain.modules):
        hidden = module(hidden)
        if position in starts:
            hidden.retain_grad()
            outputs.append(hidden)
    model.zero_grad()
    F.cross_entropy(hidden, label).backward()
    probe = []
    for stage, z in zip(chain.stages, outputs):
        z_flat, k = z.detach().view(stage.out_channels, stage.positions), z.grad.view(stage.out_channels, -1)
        _, known = preactivation(stage.activation, stage.activation(z_flat) if stage.activation else z_flat)
        probe.append((z_flat, k, known))
    return probe


def audit_table(audit: ModelAudit, title: str = "leakage audit") -> Table:
    """The per-layer rows and the risk index as a rich table."""
    table = Table(title=title, caption=f"risk index {audit.risk_index:.3f} (0 = fully recoverable)"
                  + ("" if audit.exact else "; a lower bound: some layers were too large to factor"))
    for column in ("layer", "kind", "unknowns", "constraints", "rank", "deficiency", "condition"):
        table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
    for layer in audit.layers:
        if layer.rank is None:
            rank, condition = "not factored", "–"
        else:
            rank, condition = str(layer.rank), f"{layer.condition:.3g}" if layer.condition is not None else "∞"
        table.add_row(layer.name, layer.kind, str(layer.unknowns), str(layer.constraints),
                      rank, str(layer.deficiency), condition)
    return table
