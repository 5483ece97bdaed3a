"""The sanity check of a lab update: does the attacks' model of the client re-compute it?

Every gradient attack explains a captured update Δ = w' − w with one model of the client's
training: [0, 1] images normalised with the mean and std the server was given, the *mean*
cross-entropy of the batch, BatchNorm on the batch's own statistics (train mode), no dropout
or augmentation beyond the samples themselves, plain SGD at ``lr`` for ``local_steps`` steps.
For one step that model is exact, Δ = −lr · ∇L(w; samples); for several it is first order,
the steps taken as one gradient of all samples, g = −Δ / (lr · steps)
(:meth:`~fedleak.core.updates.ClientUpdate.pseudo_gradient`).

When a lab client reports the samples it trained on (:mod:`fedleak.federation.lab`), the
server computes that gradient ĝ and compares it with g over the trainable parameters (the
relative error ‖ĝ − g‖ / ‖g‖). If the model does not fit, the check tries its alternatives
in turn and names the first that does: which parameters did not move (frozen layers), no
normalisation, a summed loss (g = N·ĝ for N samples), BatchNorm on running statistics (eval
mode), another learning rate or number of steps (g = α·ĝ), weight decay (g = α·ĝ + λ·w,
least squares). "The attack fails on my own model" is most often one of these.

After several steps the first-order model is off by the weights' drift between the steps;
the verdict is then ``approximate`` with its error, and only alternatives that change the
model's structure are named (where they halve the error): at a large ``lr`` the drift can
hide them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F

from fedleak.core.updates import ClientUpdate, ReportedSamples
from fedleak.models import ModelSpec
from fedleak.models.base import ImageClassifier, has_batch_norm

EXACT = 1e-3
"""The relative error up to which one SGD step counts as re-computed, beyond rounding
(:meth:`_Case.tolerance`): a weight decay of 0.01 is already ten times more."""

CLOSE_SCALE = 0.05
"""How far a fitted scale may be from the one expected (1, or N for a summed loss) and still match it."""


@dataclass(frozen=True)
class SanityVerdict:
    """What the check found: ``consistent`` (the model re-computes the update), ``approximate``
    (several local steps: a first-order model, its error stated), ``mismatch`` (named) or
    ``failed`` (the check itself could not run: why)."""

    status: Literal["consistent", "approximate", "mismatch", "failed"]
    detail: str
    relative_error: float

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"


Vector = torch.Tensor
"""The trainable parameters' values (or gradients) flattened in ``parameters_by_name`` order."""


@dataclass(frozen=True)
class _Case:
    """One update under check: the model's gradient ĝ and the update's g, flattened alike."""

    spec: ModelSpec
    update: ClientUpdate
    samples: ReportedSamples
    names: tuple[str, ...]
    """The trainable parameters, in model order (what the vectors hold)."""
    modelled: Vector
    observed: Vector

    @classmethod
    def of(cls, spec: ModelSpec, update: ClientUpdate, samples: ReportedSamples) -> _Case:
        model = spec.with_weights(update.global_weights)
        names = tuple(model.parameters_by_name())
        return cls(spec, update, samples, names, _gradient(model.training_simulation(), samples),
                   _flat(update.pseudo_gradient(), names))

    def gradient(self, model: ImageClassifier) -> Vector:
        return _gradient(model, self.samples)

    def flat(self, weights: dict[str, torch.Tensor]) -> Vector:
        return _flat(weights, self.names)

    def error(self, modelled: Vector) -> float:
        """‖ĝ − g‖ / ‖g‖."""
        return float(torch.linalg.vector_norm(modelled - self.observed)
                     / torch.linalg.vector_norm(self.observed).clamp_min(1e-30))

    def tolerance(self) -> float:
        """:data:`EXACT` plus what rounding explains: Δ is a difference of float32 weights, each
        rounded to half a unit in the last place (2⁻²⁴ relative), so at a small ``lr`` the
        relative error of g is at least ‖w‖·2⁻²⁴ / ‖Δ‖ (with room for the arithmetic)."""
        weights = torch.linalg.vector_norm(self.flat(self.update.global_weights))
        step = torch.linalg.vector_norm(self.observed) * self.update.metadata.lr * self.update.metadata.local_steps
        return EXACT + float(64 * 2.0**-24 * weights / step.clamp_min(1e-30))

    def cosine(self) -> float:
        return float(F.cosine_similarity(self.modelled, self.observed, dim=0))

    def scale(self) -> float:
        """The least-squares α in g ≈ α·ĝ."""
        return float(self.modelled @ self.observed / (self.modelled @ self.modelled).clamp_min(1e-30))


@dataclass(frozen=True)
class _Fit:
    """One way of explaining the update: its relative error and what it means for the user."""

    error: float
    explains: str


def check_update(spec: ModelSpec, update: ClientUpdate) -> SanityVerdict | None:
    """Re-compute ``update`` from the samples its client reported (``None``: none reported).

    Parameters
    ----------
    spec : ModelSpec
        The model the attacks use (with the normalisation the server was given).
    update : ClientUpdate
        A captured update whose ``reported`` samples are the client's ground truth.

    Returns
    -------
    SanityVerdict | None
        The verdict; its ``detail`` names the first mismatch and how to correct for it.
    """
    samples = update.reported
    if samples is None or not len(samples.labels):
        return None
    meta = update.metadata
    if meta.num_examples != len(samples.labels):
        return SanityVerdict("mismatch", f"samples: the reply declares {meta.num_examples} examples, the client "
                             f"reported {len(samples.labels)} (its num-examples counts something else, e.g. its "
                             "whole shard, or a DataLoader with worker processes hid samples from fedleak.recorded)",
                             math.nan)
    case = _Case.of(spec, update, samples)
    error = case.error(case.modelled)
    one_step = meta.local_steps == 1
    exact = case.tolerance()
    if one_step and error <= exact:
        return SanityVerdict("consistent", f"one SGD step re-computed from the {len(samples.labels)} reported "
                             f"samples (relative error {error:.1e})", error)
    for alternative in _ALTERNATIVES if one_step else _STRUCTURAL:
        fit = alternative(case)
        if fit is not None and fit.error <= (exact if one_step else error / 2):
            return SanityVerdict("mismatch", f"{fit.explains} (relative error {error:.2g} as modelled, "
                                 f"{fit.error:.2g} so)", error)
    if one_step:
        return SanityVerdict("mismatch", f"unexplained: relative error {error:.2g}, cosine {case.cosine():.3f} — "
                             "not plain SGD on the mean cross-entropy of the reported samples (dropout, "
                             "augmentation, label smoothing, another loss or optimizer?)", error)
    return SanityVerdict("approximate", f"{meta.local_steps} local steps taken as one gradient: relative error "
                         f"{error:.2g}, cosine {case.cosine():.3f}", error)


def _flat(weights: dict[str, torch.Tensor], names: tuple[str, ...]) -> Vector:
    return torch.cat([weights[name].detach().float().flatten() for name in names])


def _gradient(model: ImageClassifier, samples: ReportedSamples) -> Vector:
    """∇ of the mean cross-entropy of ``samples`` at ``model``'s weights, flattened."""
    parameters = list(model.parameters_by_name().values())
    loss = F.cross_entropy(model(samples.images), samples.labels)
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten()
                      for p, g in zip(parameters, grads, strict=True)]).detach()


Alternative = Callable[[_Case], "_Fit | None"]


def _frozen(case: _Case) -> _Fit | None:
    """Parameters the model moves that the client left exactly as sent."""
    delta = case.update.delta
    still = [name for name in case.names if not bool(delta[name].any())]
    if not still:
        return None
    moved = torch.cat([torch.full((delta[name].numel(),), name not in still) for name in case.names])
    return _Fit(case.error(torch.where(moved, case.modelled, torch.zeros_like(case.modelled))),
                f"frozen layers: the client left {', '.join(still[:3])}{' …' if len(still) > 3 else ''} unchanged; "
                "the attacks differentiate every parameter")


def _unnormalised(case: _Case) -> _Fit | None:
    channels = case.spec.image_shape[0]
    plain = replace(case.spec, mean=(0.0,) * channels, std=(1.0,) * channels)
    if plain == case.spec:
        return None
    gradient = case.gradient(plain.with_weights(case.update.global_weights).training_simulation())
    return _Fit(case.error(gradient), "normalisation: the update fits [0, 1] images fed as they are; give "
                "fedleak.attach the mean and std the client's transforms really apply")


def _summed_loss(case: _Case) -> _Fit | None:
    meta = case.update.metadata
    batch = min(meta.batch_size, meta.num_examples)
    alpha = case.scale()
    if batch < 2 or abs(alpha / batch - 1) > CLOSE_SCALE:
        return None
    return _Fit(case.error(batch * case.modelled),
                f"loss reduction: the update is {alpha:.2f}× the mean loss's over batches of {batch}, a summed loss; "
                f"give fedleak.attach lr={meta.lr * batch:g} (lr × batch), which is the same update")


def _batch_norm_eval(case: _Case) -> _Fit | None:
    model = case.spec.with_weights(case.update.global_weights)
    if not has_batch_norm(model):
        return None
    return _Fit(case.error(case.gradient(model.eval())), "BatchNorm mode: the client trains BatchNorm on its "
                "running statistics (eval mode); the attacks model batch statistics (train mode)")


def _learning_rate(case: _Case) -> _Fit | None:
    alpha = case.scale()
    if alpha <= 0 or abs(alpha - 1) <= CLOSE_SCALE:
        return None
    meta = case.update.metadata
    return _Fit(case.error(alpha * case.modelled),
                f"lr or local steps: the update is {alpha:.3g}× what lr={meta.lr:g} over {meta.local_steps} steps "
                f"gives; give fedleak.attach lr={meta.lr * alpha:.3g} (or the client's real lr and local_steps)")


def _weight_decay(case: _Case) -> _Fit | None:
    """g = α·ĝ + λ·w: SGD's weight decay adds λ·w to every step's gradient."""
    basis = torch.stack([case.modelled, case.flat(case.update.global_weights)], dim=1).double()
    solution = torch.linalg.lstsq(basis, case.observed.double().unsqueeze(1)).solution.squeeze(1)
    alpha, decay = float(solution[0]), float(solution[1])
    if decay <= 0:
        return None
    return _Fit(case.error((basis @ solution).float()),
                f"weight decay: the update fits SGD with weight decay {decay:.2g} (gradient scale {alpha:.3g}); "
                "the attacks model none, so the decay term is noise to them")


_ALTERNATIVES: tuple[Alternative, ...] = (_frozen, _unnormalised, _summed_loss, _batch_norm_eval, _learning_rate,
                                          _weight_decay)
"""Tried in this order on a one-step update; the first that fits is named."""

_STRUCTURAL = (_frozen, _unnormalised, _summed_loss, _batch_norm_eval)
"""Tried on a several-step update: a fitted scale or decay there would only absorb the drift
of the later steps from the first-order model, which the verdict states instead."""
