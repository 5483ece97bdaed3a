"""Image and label metrics after one-to-one matching.

A reconstruction's order is arbitrary, so each recovered image is first paired with
one ground-truth image by the Hungarian method on pairwise MSE (scipy's
``linear_sum_assignment``); MSE, PSNR (data range [0, 1]) and SSIM (an 11×11 Gaussian window,
:mod:`fedleak.core.image_similarity`) are then computed per pair.

**The "recovered nothing" reference.** A reconstruction of 5 dB may still be "closer"
than noise without showing anything. Each score is therefore set against a trivial
guess that needs no update at all: the training pool's mean image, scored against
every ground-truth image. In the spirit of the relative data leakage value of
Hatamizadeh et al. (2023, *Do gradient inversion attacks make federated learning
unsafe?*, NVFlare), the leakage of one ground-truth image x is

    leakage(x) = (max_r SSIM(r, x) − SSIM(x̄, x)) / max(SSIM(x̄, x), 0.01),

with r over the reconstructed images and x̄ the mean image: 0 is no better than the
guess, 1 twice as similar, negative worse (the floor keeps it finite where the mean
image's SSIM is ≈ 0). An image counts as *recovered* when its matched reconstruction
meets DLG's criterion (MSE < 1e-3), or Haim et al.'s (SSIM > 0.4) while beating the
mean image's SSIM for that image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from fedleak.core import image_similarity

SUCCESS_MSE = 1e-3
"""DLG's criterion for a recovered image (used for success rates)."""
SUCCESS_SSIM = 0.4
"""Haim et al.'s criterion for a reconstructed training sample (SSIM above it)."""
LEAKAGE_FLOOR = 0.01
"""The smallest mean-image SSIM the leakage score divides by."""
_PAIRS_PER_CALL = 4096
"""Image pairs per SSIM call when comparing every reconstruction with every image (bounds memory)."""


@dataclass(frozen=True)
class MatchedScores:
    """Per matched pair: indices into the reconstruction and the ground truth, and scores."""

    recon_index: np.ndarray
    truth_index: np.ndarray
    mse: torch.Tensor
    psnr: torch.Tensor
    ssim: torch.Tensor
    label_accuracy: float | None
    """Matched pairs whose recovered label is the true one."""
    label_count_accuracy: float | None
    """Share of the true labels found, as a multiset: Σ_c min(n̂_c, n_c) / N (order-free)."""
    reference: PriorReference | None = None
    """The same ground truth against the mean image (``None``: no prior given)."""

    def summary(self) -> dict[str, float | None]:
        scores = {
            "mse": float(self.mse.mean()),
            "psnr": float(self.psnr.mean()),
            "best_psnr": float(self.psnr.max()),
            "ssim": float(self.ssim.mean()),
            "label_accuracy": self.label_accuracy,
            "label_count_accuracy": self.label_count_accuracy,
            "success_rate": float((self.mse < SUCCESS_MSE).float().mean()),
            "ssim_success_rate": float((self.ssim > SUCCESS_SSIM).float().mean()),
        }
        if self.reference is not None:
            scores.update(self.reference.summary(self))
        return scores


@dataclass(frozen=True)
class PriorReference:
    """Per ground-truth image: the mean image's PSNR and SSIM, and the best SSIM any
    reconstruction reaches (all indexed like the ground truth)."""

    psnr: torch.Tensor
    ssim: torch.Tensor
    best_ssim: torch.Tensor

    @property
    def leakage(self) -> torch.Tensor:
        """(best SSIM − mean-image SSIM) / max(mean-image SSIM, floor), per image."""
        return (self.best_ssim - self.ssim) / self.ssim.clamp_min(LEAKAGE_FLOOR)

    def recovered(self, matched: MatchedScores) -> torch.Tensor:
        """Which matched pairs recover their image (see the module docstring)."""
        beats_prior = matched.ssim > self.ssim[torch.as_tensor(matched.truth_index)]
        return (matched.mse < SUCCESS_MSE) | ((matched.ssim > SUCCESS_SSIM) & beats_prior)

    def summary(self, matched: MatchedScores) -> dict[str, float | None]:
        return {
            "prior_psnr": float(self.psnr.mean()),
            "prior_ssim": float(self.ssim.mean()),
            "leakage": float(self.leakage.mean()),
            "recovered_rate": float(self.recovered(matched).sum()) / len(self.ssim),
        }


def match(recon: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment minimising total MSE; pairs min(len(recon), len(truth))."""
    cost = torch.cdist(recon.flatten(1).double(), truth.flatten(1).double()) ** 2 / recon[0].numel()
    rows, cols = linear_sum_assignment(cost.numpy())
    return np.asarray(rows), np.asarray(cols)


def score(
    recon: torch.Tensor,
    truth: torch.Tensor,
    recon_labels: torch.Tensor | None = None,
    truth_labels: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
) -> MatchedScores:
    """Match ``recon`` to ``truth`` (both ``(N, C, H, W)`` in [0, 1]) and score each pair;
    with ``prior`` (one ``(C, H, W)`` image, the pool's mean) also the reference scores."""
    rows, cols = match(recon, truth)
    paired, target = recon[rows].float(), truth[cols].float()
    mse = ((paired - target) ** 2).flatten(1).mean(dim=1)
    psnr = image_similarity.psnr(paired, target)
    ssim = image_similarity.ssim(paired, target)
    accuracy = count_accuracy = None
    if recon_labels is not None and truth_labels is not None:
        accuracy = float((recon_labels[rows] == truth_labels[cols]).float().mean())
        count_accuracy = label_count_accuracy(recon_labels, truth_labels)
    reference = None if prior is None else prior_reference(recon, truth, prior)
    return MatchedScores(rows, cols, mse, psnr, ssim, accuracy, count_accuracy, reference)


def prior_reference(recon: torch.Tensor, truth: torch.Tensor, prior: torch.Tensor) -> PriorReference:
    """The mean image ``prior`` scored against each ground-truth image (matched like a
    reconstruction: every image is paired with its own copy of the guess), and each image's
    best SSIM over all of ``recon``."""
    truth = truth.float()
    guess = prior.float().expand_as(truth).contiguous()
    return PriorReference(image_similarity.psnr(guess, truth), image_similarity.ssim(guess, truth),
                          best_ssim(recon.float(), truth))


def best_ssim(recon: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """max over ``recon`` of SSIM(r, x), per image x of ``truth`` (in bounded chunks)."""
    per_call = max(1, _PAIRS_PER_CALL // len(recon))
    best = []
    for chunk in truth.split(per_call):
        pairs = image_similarity.ssim(recon.repeat(len(chunk), 1, 1, 1), chunk.repeat_interleave(len(recon), dim=0))
        best.append(pairs.view(len(chunk), len(recon)).amax(dim=1))
    return torch.cat(best)


def label_count_accuracy(recon_labels: torch.Tensor, truth_labels: torch.Tensor) -> float:
    """Σ_c min(n̂_c, n_c) / N: how many of the true labels were recovered, ignoring order."""
    classes = int(max(recon_labels.max(), truth_labels.max())) + 1
    counts = [torch.bincount(labels, minlength=classes) for labels in (recon_labels, truth_labels)]
    found = torch.minimum(*counts)
    return float(found.sum()) / len(truth_labels)
