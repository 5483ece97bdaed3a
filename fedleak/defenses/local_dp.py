"""Local differential privacy: clip the update to L2 norm C, then add Gaussian or Laplace noise.

Each client perturbs its own update before sending it, so the guarantee holds against
the server too. With clipping to ``clip_norm`` = C, one release is the Gaussian
mechanism with L2 sensitivity C (add/remove one client's data, the convention of
Opacus and Flower), so noise of standard deviation σ = z·C gives the RDP of
Mironov (2017) with noise multiplier z. The Laplace mechanism is calibrated to L1
sensitivity, which an L2 clip bounds only by √d·C; fedleak does not account it.

Without ``clip_norm`` this is the DLG paper's noise defense (Zhu et al. 2019, §5):
noise of a given variance, no guarantee.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator

from fedleak.core.config import Strict
from fedleak.core.updates import Weights
from fedleak.defenses.base import DEFENSES, Defense, LocalRound, PrivacyEvent


class LocalDPConfig(Strict):
    mechanism: Literal["gaussian", "laplace"] = "gaussian"
    clip_norm: float | None = Field(None, gt=0)
    """C: the update is scaled to L2 norm ≤ C first; ``None``: no clipping."""
    std: float | None = Field(None, ge=0)
    """Standard deviation of the noise per coordinate (Laplace: scale b = std/√2)."""
    noise_multiplier: float | None = Field(None, ge=0)
    """z: std = z·C (needs ``clip_norm``)."""

    @model_validator(mode="after")
    def _one_scale(self) -> LocalDPConfig:
        if (self.std is None) == (self.noise_multiplier is None):
            raise ValueError("set exactly one of 'std' and 'noise_multiplier'")
        if self.noise_multiplier is not None and self.clip_norm is None:
            raise ValueError("'noise_multiplier' needs 'clip_norm' (std = noise_multiplier × clip_norm)")
        return self

    @property
    def noise_std(self) -> float:
        return self.std if self.std is not None else self.noise_multiplier * self.clip_norm  # type: ignore[operator]


def clip_update(delta: Weights, max_norm: float) -> Weights:
    """Scale ``delta`` by min(1, C/‖Δ‖₂), the global L2 norm over every tensor."""
    norm = torch.cat([d.double().flatten() for d in delta.values()]).norm()
    factor = min(1.0, max_norm / float(norm)) if norm > 0 else 1.0
    return {k: d * factor for k, d in delta.items()}


def noise_like(tensor: torch.Tensor, mechanism: str, std: float, generator: torch.Generator) -> torch.Tensor:
    """Zero-mean noise with standard deviation ``std`` per coordinate."""
    if mechanism == "gaussian":
        return torch.randn(tensor.shape, generator=generator) * std
    # Laplace(b) is the difference of two Exp(1) draws scaled by b; its variance is 2b².
    exponentials = torch.empty((2, *tensor.shape)).exponential_(generator=generator)
    return (exponentials[0] - exponentials[1]) * (std / math.sqrt(2))


@DEFENSES.register("local-dp")
class LocalDP(Defense):
    Config = LocalDPConfig
    config: LocalDPConfig

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        if self.config.clip_norm is not None:
            delta = clip_update(delta, self.config.clip_norm)
        std, mechanism = self.config.noise_std, self.config.mechanism
        return {k: d + noise_like(d, mechanism, std, generator).to(d.dtype) for k, d in delta.items()}

    def privacy_events(self, local_round: LocalRound) -> list[PrivacyEvent]:
        if self.config.mechanism != "gaussian" or self.config.clip_norm is None:
            return []
        return [PrivacyEvent(self.config.noise_std / self.config.clip_norm, 1.0, 1)]
