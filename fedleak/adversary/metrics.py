"""Image and label metrics after one-to-one matching.

A reconstruction's order is arbitrary, so each recovered image is first paired with
one ground-truth image by the Hungarian method on pairwise MSE (scipy's
``linear_sum_assignment``); MSE, PSNR (data range [0, 1]) and SSIM (torchmetrics)
are then computed per pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

SUCCESS_MSE = 1e-3
"""DLG's criterion for a recovered image (used for success rates)."""
SUCCESS_SSIM = 0.4
"""Haim et al.'s criterion for a reconstructed training sample (SSIM above it)."""


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

    def summary(self) -> dict[str, float | None]:
        return {
            "mse": float(self.mse.mean()),
            "psnr": float(self.psnr.mean()),
            "ssim": float(self.ssim.mean()),
            "label_accuracy": self.label_accuracy,
            "label_count_accuracy": self.label_count_accuracy,
            "success_rate": float((self.mse < SUCCESS_MSE).float().mean()),
            "ssim_success_rate": float((self.ssim > SUCCESS_SSIM).float().mean()),
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
) -> MatchedScores:
    """Match ``recon`` to ``truth`` (both ``(N, C, H, W)`` in [0, 1]) and score each pair."""
    rows, cols = match(recon, truth)
    paired, target = recon[rows].float(), truth[cols].float()
    mse = ((paired - target) ** 2).flatten(1).mean(dim=1)
    psnr = peak_signal_noise_ratio(paired, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(
        paired, target, data_range=1.0, reduction="none", kernel_size=_ssim_kernel(truth)
    )
    accuracy = count_accuracy = None
    if recon_labels is not None and truth_labels is not None:
        accuracy = float((recon_labels[rows] == truth_labels[cols]).float().mean())
        count_accuracy = label_count_accuracy(recon_labels, truth_labels)
    assert isinstance(ssim, torch.Tensor)  # the SSIM map is returned only when asked for
    return MatchedScores(rows, cols, mse, psnr, ssim, accuracy, count_accuracy)


def label_count_accuracy(recon_labels: torch.Tensor, truth_labels: torch.Tensor) -> float:
    """Σ_c min(n̂_c, n_c) / N: how many of the true labels were recovered, ignoring order."""
    classes = int(max(recon_labels.max(), truth_labels.max())) + 1
    counts = [torch.bincount(labels, minlength=classes) for labels in (recon_labels, truth_labels)]
    found = torch.minimum(*counts)
    return float(found.sum()) / len(truth_labels)


def _ssim_kernel(images: torch.Tensor) -> int:
    """SSIM's usual 11×11 window, shrunk (odd) for images smaller than that (8×8 digits: 7)."""
    side = min(11, int(images.shape[-2]), int(images.shape[-1]))
    return side if side % 2 else side - 1
