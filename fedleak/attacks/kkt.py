"""Reconstruction from trained parameters through the KKT conditions of margin maximisation.

Haim et al. (NeurIPS 2022, "Reconstructing Training Data from Trained Neural Networks"):
gradient flow on the logistic loss drives a homogeneous network towards a KKT point of
``min ‖θ‖² s.t. yᵢ Φ(θ; xᵢ) ≥ 1`` (Lyu & Li 2020; Ji & Telgarsky 2020), whose
stationarity condition is θ = Σᵢ λᵢ yᵢ ∇θΦ(θ; xᵢ) with λᵢ ≥ 0 (Haim et al. Thm 3.1). The
attack therefore looks for m candidates x̂ᵢ and multipliers λᵢ minimising (§3, Eq. 4)

    L = ‖θ − (1/m) Σᵢ λᵢ yᵢ ∇θΦ(θ; x̂ᵢ)‖²  +  5 Σᵢ max(0, λ_min − λᵢ)²  +  prior(x̂),

the 1/m scale and the weight 5 as in the authors' code. Buzaglo et al. (NeurIPS 2023,
"Deconstructing Data Reconstruction") extend it:

* multiclass (their Eq. 3): the constraints are the margins Φ_{yᵢ}(x̂ᵢ) − Φ_j(x̂ᵢ), j ≠ yᵢ,
  each with its own multiplier (``multiclass_margins = "all"``); their code keeps only
  the runner-up class j = argmax_{j≠yᵢ} Φ_j with one λᵢ per candidate (``"runner_up"``);
* weight decay (§4): a stationary point of Σ ℓ + (β/2)‖θ‖² satisfies the same equation
  with λᵢ = −ℓ'ᵢ / β > 0 but no margin normalisation, so the only change is the lower
  bound on λ, 0 instead of λ_min (``variant = "weight_decay"``).

Practical details follow the authors' code: ReLU's derivative is a step, so the residual
would carry no gradient to x̂ through the activation pattern; during the attack each
(leaky) ReLU keeps its forward value but back-propagates slope + (1 − slope)·σ(α z)
(their "modified ReLU"). Candidates start near the data mean, x̂ = mean + N(0, s²)
(their mean-reduced pixel space; here the ``mean`` buffer the model normalises with), λ
starts ~ U(0, 1); both are optimised by SGD with momentum 0.9; 2n candidates for n
training samples with balanced labels; the prior penalises pixels outside [0, 1].
For a bias-free ReLU network the equation is invariant under (x̂ − mean, λ) → (c(x̂ − mean), λ/c),
so a candidate's contrast is not determined; each candidate is min–max stretched to
[0, 1] before it is returned (as the authors do before scoring).

What the victim's preprocessing does matters: Haim et al. subtract the training set's
per-pixel mean. On 20 bundled digits (tests/test_kkt.py, 2,500 steps) a bias-free MLP fed
per-pixel-centred inputs gave 9 exact recoveries of 20 (binary) and 16 (ten classes, all
margins); the same models centred by the scalar channel mean (fedleak's default) gave 0 and
6. Scenarios choose the per-pixel mean with ``dataset.normalization = "pixel"``.

The attack reads the *returned* weights θ (``update.client_weights``): a client's model
after many local epochs (cross-silo) or a final global model — a model trained to
(near) zero loss from a small initialisation, which is what the theory needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedleak.attacks.base import (
    ATTACKS,
    Attack,
    AttackNotApplicable,
    Budget,
    Reconstruction,
    Requirement,
)
from fedleak.attacks.devices import DeviceConfig
from fedleak.core.image_similarity import ssim
from fedleak.core.updates import ClientUpdate
from fedleak.models import ImageClassifier
from fedleak.models.base import has_batch_norm

MulticlassMargins = Literal["runner_up", "all"]
Variant = Literal["max_margin", "weight_decay"]

LAMBDA_PENALTY = 5.0
"""Weight of the dual-feasibility penalty max(0, λ_low − λ)² (the authors' code)."""


class KKTConfig(DeviceConfig):
    """Defaults: Haim et al.'s MNIST odd/even run ``kcf9bhbi`` (their published command line)."""

    iterations: int = Field(50_000, ge=1)
    """SGD steps on candidates and multipliers."""
    candidates_per_example: int = Field(2, ge=1)
    """m = this × the update's ``num_examples`` (Haim et al. use m = 2n)."""
    num_candidates: int | None = Field(None, ge=1)
    """Overrides ``candidates_per_example`` when set."""
    lr: float = Field(0.0305, gt=0)
    """Step size for the candidates (SGD, momentum 0.9)."""
    lambda_lr: float = Field(1e-4, gt=0)
    """Step size for the multipliers (SGD, momentum 0.9)."""
    init_scale: float = Field(0.035, ge=0)
    """Candidates start at the model's mean (per channel or per pixel) plus N(0, init_scale²) noise, in pixel units."""
    lambda_min: float = Field(0.447, ge=0)
    """Lower bound on each λ in the max-margin variant (the normalised margin constraint)."""
    relu_alpha: float = Field(150.0, gt=0)
    """Sharpness α of the sigmoid that replaces (leaky) ReLU's derivative during the attack."""
    variant: Variant = "max_margin"
    """``weight_decay``: λ ≥ 0 instead of λ ≥ λ_min (Buzaglo et al. §4)."""
    multiclass_margins: MulticlassMargins = "runner_up"
    """Models with C > 1 outputs: one λ per candidate on the runner-up margin (the authors'
    code), or one λ per wrong class (Buzaglo et al. Eq. 3)."""
    prior_weight: float = Field(1.0, ge=0)
    """Weight of Σ (max(0, −x̂)² + max(0, x̂ − 1)²) over pixels."""
    double_precision: bool = True
    """Optimise in float64, as the authors' code does."""
    rescale: bool = True
    """Min–max stretch each candidate to [0, 1] before returning it (contrast is not identified)."""


class SmoothedReLU(nn.Module):
    """(Leaky) ReLU forward; back-propagates slope + (1 − slope)·σ(α z) as the derivative.

    ``value + g(z) − g(z).detach()`` keeps the exact forward value while every derivative
    (also the second one, which reaches the candidates) is that of
    g(z) = slope·z + (1 − slope)·softplus(α z)/α.
    """

    def __init__(self, alpha: float, negative_slope: float = 0.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.negative_slope = negative_slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        smooth = self.negative_slope * z + (1 - self.negative_slope) * F.softplus(z, beta=self.alpha)
        return F.leaky_relu(z.detach(), self.negative_slope) + smooth - smooth.detach()


def with_smoothed_relus(model: nn.Module, alpha: float) -> int:
    """Replace every ``nn.ReLU`` / ``nn.LeakyReLU`` submodule of ``model`` in place; returns how many."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (nn.ReLU, nn.LeakyReLU)):
                slope = child.negative_slope if isinstance(child, nn.LeakyReLU) else 0.0
                setattr(parent, name, SmoothedReLU(alpha, slope))
                replaced += 1
    return replaced


def balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    """Labels 0, 1, …, C−1, 0, 1, … for ``count`` candidates (C = 2 for a one-logit model)."""
    return torch.arange(count) % max(num_classes, 2)


def margins(logits: torch.Tensor, labels: torch.Tensor, multiclass: MulticlassMargins) -> torch.Tensor:
    """The constraints' margins ``(m, K)`` whose gradients the KKT sum combines.

    One logit: yΦ with y = ±1 for label 1 / 0 (K = 1). C logits: Φ_y − Φ_j for the
    runner-up j (K = 1) or for every j ≠ y (K = C − 1).
    """
    if logits.shape[1] == 1:
        return (2 * labels - 1).to(logits.dtype)[:, None] * logits
    own = logits.gather(1, labels[:, None])
    if multiclass == "runner_up":
        others = logits.scatter(1, labels[:, None], float("-inf"))
        return own - others.max(dim=1, keepdim=True).values
    wrong = torch.ones_like(logits, dtype=torch.bool).scatter(1, labels[:, None], False)
    return own - logits[wrong].view(len(logits), -1)


def kkt_residual(parameters: Sequence[torch.Tensor], weighted_margins: torch.Tensor) -> torch.Tensor:
    """‖θ − ∇θ weighted_margins‖² summed over parameters, differentiable in the candidates and λ.

    ``weighted_margins`` is the scalar (1/m) Σᵢₖ λᵢₖ marginᵢₖ(θ), so its θ-gradient is the
    KKT combination Σ λ ∇θ margin (Haim et al. Eq. 4, Buzaglo et al. Eq. 3).
    """
    combination = torch.autograd.grad(weighted_margins, parameters, create_graph=True)
    return torch.stack([((p.detach() - g) ** 2).sum() for p, g in zip(parameters, combination)]).sum()


def lambda_penalty(multipliers: torch.Tensor, lower: float) -> torch.Tensor:
    """Dual feasibility λ ≥ lower as 5 Σ max(0, lower − λ)²."""
    return LAMBDA_PENALTY * (lower - multipliers).relu().pow(2).sum()


def pixel_prior(images: torch.Tensor) -> torch.Tensor:
    """Σ over pixels of the squared distance outside [0, 1]."""
    return (images - 1).relu().pow(2).sum() + (-images).relu().pow(2).sum()


def stretch(images: torch.Tensor) -> torch.Tensor:
    """Each image affinely mapped so its minimum is 0 and its maximum 1 (constant images → 0)."""
    flat = images.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    scale = (high - low).clamp_min(1e-12)
    return ((flat - low[:, None]) / scale[:, None]).view_as(images)


@ATTACKS.register("kkt")
class KKT(Attack):
    Config = KKTConfig
    config: KKTConfig
    requires = frozenset({Requirement.TRAINED})

    def run(self, update: ClientUpdate, model: ImageClassifier, budget: Budget) -> Reconstruction:
        deadline = budget.deadline()
        config = self.config
        if model.num_classes == 2:
            raise AttackNotApplicable("kkt needs one logit (binary) or a C-way classifier; this model has 2 outputs")
        if has_batch_norm(model):  # the KKT point is one of the function the client trained: Φ(θ; xᵢ) per sample
            raise AttackNotApplicable("kkt needs a network whose output for a sample depends on that sample alone; "
                                      "BatchNorm trains on batch statistics")
        dtype = torch.float64 if config.double_precision else torch.float32
        device = config.torch_device()
        trained = copy.deepcopy(model).to(device, dtype)  # a copy: the caller's model stays as it is
        trained.load_state_dict(update.client_weights)
        trained.eval()
        replaced = with_smoothed_relus(trained, config.relu_alpha)
        parameters = [p for p in trained.parameters() if p.requires_grad]
        if not parameters:
            raise AttackNotApplicable("kkt needs trainable parameters to match")

        count = config.num_candidates or config.candidates_per_example * update.metadata.num_examples
        labels = balanced_labels(count, trained.num_classes).to(device)
        generator = torch.Generator().manual_seed(config.seed)  # drawn on the CPU: equal draws on every device
        mean = trained.mean.to(dtype)
        offsets = torch.randn(count, *trained.image_shape, generator=generator, dtype=dtype).to(device)
        offsets *= config.init_scale
        per_candidate = trained.num_classes == 1 or config.multiclass_margins == "runner_up"
        margin_count = 1 if per_candidate else trained.num_classes - 1
        multipliers = torch.rand(count, margin_count, generator=generator, dtype=dtype).to(device)
        offsets.requires_grad_(True)
        multipliers.requires_grad_(True)
        optimizer_x = torch.optim.SGD([offsets], lr=config.lr, momentum=0.9)
        optimizer_l = torch.optim.SGD([multipliers], lr=config.lambda_lr, momentum=0.9)
        lower = config.lambda_min if config.variant == "max_margin" else 0.0

        best = (float("inf"), offsets.detach().clone(), multipliers.detach().clone())
        residual = prior = torch.tensor(float("nan"))
        iterations, diverged = 0, False
        while iterations < config.iterations and not deadline.expired():
            images = mean + offsets
            weighted = (multipliers * margins(trained(images), labels, config.multiclass_margins)).sum() / count
            residual = kkt_residual(parameters, weighted)
            prior = pixel_prior(images)
            loss = residual + lambda_penalty(multipliers, lower) + config.prior_weight * prior
            if not torch.isfinite(loss):
                diverged = True
                break
            if loss.item() < best[0]:
                best = (loss.item(), offsets.detach().clone(), multipliers.detach().clone())
            offsets.grad, multipliers.grad = torch.autograd.grad(loss, [offsets, multipliers])
            optimizer_x.step()
            optimizer_l.step()
            iterations += 1

        best_loss, best_offsets, best_multipliers = best
        images = (mean + best_offsets).float()
        images = stretch(images) if config.rescale else images.clamp(0, 1)
        return Reconstruction(
            images=images.detach().cpu(), labels=labels.cpu(), seconds=deadline.elapsed,
            extras={
                "iterations": iterations, "iterations_planned": config.iterations,
                "stopped_by_budget": iterations < config.iterations and not diverged, "diverged": diverged,
                "candidates": count, "final_loss": best_loss, "final_residual": float(residual.detach()),
                "final_prior": float(prior.detach()), "relus_smoothed": replaced,
                "lambda_min": float(best_multipliers.min()), "lambda_mean": float(best_multipliers.mean()),
                "lambda_max": float(best_multipliers.max()),
                "lambda_at_bound": float((best_multipliers <= lower + 1e-6).double().mean()),
            },
        )


def nearest_reconstruction_ssim(recon: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Haim et al.'s score (§5): for each training image, the SSIM of its nearest reconstruction.

    Nearest by normalised cross-correlation distance (each image standardised, then L2), as
    the authors' evaluation; SSIM with σ 1.5 and data range 1 over an 11×11 Gaussian window
    (:func:`~fedleak.core.image_similarity.ssim`; the paper's 3×3 window is not applied). ``recon``
    and ``truth`` are ``(N, C, H, W)`` in [0, 1]; returns ``(len(truth),)``. Counting the
    entries > 0.4 gives the number of reconstructed training samples.
    """
    nearest = (standardised(truth) @ standardised(recon).T).argmax(dim=1)
    return ssim(recon[nearest].float(), truth.float())


def exact_recoveries(recon: torch.Tensor, pool: torch.Tensor, train_index: torch.Tensor, min_ssim: float = 0.6) -> int:
    """Training images that are, among all ``pool`` images, the nearest to some reconstruction.

    A stricter count than the paper's for small, similar images (any real 8×8 digit has SSIM
    > 0.4 to most others): the reconstruction must single out its training image among
    the non-members too, at SSIM > ``min_ssim``. ``train_index`` indexes ``pool``.
    """
    pool_directions = standardised(pool)
    nearest = torch.cat([(standardised(chunk) @ pool_directions.T).argmax(dim=1) for chunk in recon.split(256)])
    close = ssim(recon.float(), pool[nearest].float()) > min_ssim
    members = set(train_index.tolist())
    return len({int(i) for i, ok in zip(nearest, close) if ok and int(i) in members})


def standardised(images: torch.Tensor) -> torch.Tensor:
    """Flattened images with zero mean and unit norm (so L2 distance ranks like correlation)."""
    flat = images.flatten(1).double()
    flat = flat - flat.mean(dim=1, keepdim=True)
    normed: torch.Tensor = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return normed
