"""Distances between gradients and image priors used by the optimisation attacks."""

from __future__ import annotations

import torch


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def squared_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """DLG's objective (Zhu et al. 2019, eq. 4): Σ over parameters of ‖a − b‖²."""
    return sum(((x - y) ** 2).sum() for x, y in zip(a, b))  # type: ignore[return-value]


def cosine_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Inverting Gradients' objective (Geiping et al. 2020, eq. 4): 1 − cos(a, b) over all parameters.

    Scale-invariant, so it compares the *direction* of an update: a gradient and the
    update −lr·∇ it produced are at distance 0.
    """
    dot = torch.stack([(x * y).sum() for x, y in zip(a, b)]).sum()
    norms = torch.stack([(x**2).sum() for x in a]).sum().sqrt() * torch.stack([(y**2).sum() for y in b]).sum().sqrt()
    return 1 - dot / norms.clamp_min(1e-30)


def wasserstein_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """W₂ between the empirical distributions of the entries of ``a`` and of ``b``.

    GRNN's extra term (Ren et al. 2022, §3.3). In one dimension the optimal transport
    pairs sorted values, so W₂ = √(mean (sort(a) − sort(b))²).
    """
    sorted_a, sorted_b = flatten(a).sort().values, flatten(b).sort().values
    return torch.sqrt(((sorted_a - sorted_b) ** 2).mean() + 1e-30)


def total_variation(images: torch.Tensor, power: int = 1) -> torch.Tensor:
    """Mean |difference|^power of neighbouring pixels, summed over both directions.

    ``power`` 1 is Inverting Gradients' anisotropic TV (Rudin et al.); GRNN uses 2.
    """
    across = (images[..., :, 1:] - images[..., :, :-1]).abs() ** power
    down = (images[..., 1:, :] - images[..., :-1, :]).abs() ** power
    return across.mean() + down.mean()
