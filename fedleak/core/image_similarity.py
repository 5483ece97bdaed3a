"""PSNR and SSIM per image pair, for images in [0, 1].

Both follow torchmetrics' functional definitions to the last operation (``tests/test_image_similarity.py``
holds them to it) without importing torchmetrics: with the torchvision it loads, that import takes
2.5–2.9 s on 2 cores, paid by the server on the first score of every run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_K1, _K2 = 0.01, 0.03
"""Wang et al. (2004)'s constants: C1 = (K1 L)², C2 = (K2 L)² with the data range L = 1."""
_SIGMA = 1.5
_TAPS = 2 * int(3.5 * _SIGMA + 0.5) + 1
"""The Gaussian window's side: 11 for σ = 1.5 (3.5 σ either side of the centre)."""


def psnr(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / MSE) per pair of ``(N, C, H, W)`` images (data range 1): ``inf`` where they are equal."""
    difference = images - target
    squared_error = (difference * difference).sum(dim=(1, 2, 3))
    # log10 as ln / ln 10, ln 10 in the images' precision: torchmetrics' rounding, so scores stay comparable
    return -torch.log(squared_error / images[0].numel()) * (10 / torch.log(torch.tensor(10.0, dtype=images.dtype)))


def ssim(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per pair of ``(N, C, H, W)`` images in [0, 1] (Wang et al., 2004, Eq. 13).

    Local means, variances and covariance come from an 11×11 Gaussian window (σ = 1.5) over each
    channel, the images reflect-padded by 5 so every pixel has a full window; the SSIM map is
    averaged over all pixels and channels. Images need more than 5 pixels a side.

    Raises:
        ValueError: images of 5 pixels or fewer a side (the padding cannot reflect them).
    """
    pad = _TAPS // 2
    if min(images.shape[-2:]) <= pad:
        raise ValueError(f"SSIM needs images of more than {pad} pixels a side, got {tuple(images.shape[-2:])}")
    channels = images.shape[1]
    images, target = (F.pad(x, (pad, pad, pad, pad), mode="reflect") for x in (images, target))
    window = _gaussian_window(images.dtype, images.device).expand(channels, 1, _TAPS, _TAPS)
    stacked = torch.cat((images, target, images * images, target * target, images * target))
    mu_x, mu_y, xx, yy, xy = F.conv2d(stacked, window, groups=channels).split(images.shape[0])
    mu_xx, mu_yy, mu_xy = mu_x.pow(2), mu_y.pow(2), mu_x * mu_y
    var_x = torch.clamp(xx - mu_xx, min=0.0)  # E[x²] − E[x]², ≥ 0 up to rounding
    var_y = torch.clamp(yy - mu_yy, min=0.0)
    c1, c2 = _K1**2, _K2**2
    # (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)), in torchmetrics' order of operations
    similarity = ((2 * mu_xy + c1) * (2 * (xy - mu_xy) + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    mean: torch.Tensor = similarity.flatten(1).mean(dim=1)
    return mean


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The normalised separable Gaussian window, ``(1, 1, 11, 11)``."""
    offsets = torch.arange((1 - _TAPS) / 2, (1 + _TAPS) / 2, 1, dtype=dtype, device=device)
    taps = torch.exp(-(offsets / _SIGMA).pow(2) / 2)
    taps = (taps / taps.sum()).unsqueeze(0)
    return (taps.T @ taps)[None, None]
