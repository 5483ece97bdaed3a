"""Sparsification of the update: top-k, random-k, and per-layer magnitude pruning.

* ``top-k``: keep the ⌈k·n⌉ entries of largest magnitude over the whole update
  (n entries in all), zero the rest (Aji & Heafield 2017; Lin et al. 2018).
* ``random-k``: keep ⌈k·n⌉ entries chosen uniformly at random (Stich et al. 2018),
  optionally rescaled by n/⌈k·n⌉ to stay unbiased.
* ``prune``: in every tensor, zero the ⌊p·n_l⌋ entries of smallest magnitude — the
  gradient pruning of the DLG paper's defense study (Zhu et al. 2019, §5; Lin et al. 2018).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from fedleak.core.config import Strict
from fedleak.core.updates import Weights
from fedleak.defenses.base import DEFENSES, Defense


class KeepConfig(Strict):
    keep: float = Field(0.1, gt=0, le=1)
    """Fraction k of all entries kept."""


class RandomKConfig(KeepConfig):
    rescale: bool = False
    """Multiply kept entries by n/⌈k·n⌉ (an unbiased estimate of Δ)."""


class PruneConfig(Strict):
    fraction: float = Field(0.5, ge=0, lt=1)
    """Fraction p of each tensor's entries set to zero."""


def _flat(delta: Weights) -> torch.Tensor:
    return torch.cat([d.flatten() for d in delta.values()])


def _keep_only(delta: Weights, kept: torch.Tensor, factor: float = 1.0) -> Weights:
    """Zero every entry of ``delta`` except the flat indices ``kept``."""
    mask = torch.zeros(sum(d.numel() for d in delta.values()), dtype=torch.bool)
    mask[kept] = True
    out, start = {}, 0
    for name, d in delta.items():
        out[name] = torch.where(mask[start:start + d.numel()].view_as(d), d * factor, torch.zeros_like(d))
        start += d.numel()
    return out


def kept_count(fraction: float, total: int) -> int:
    return math.ceil(fraction * total)


@DEFENSES.register("top-k")
class TopK(Defense):
    Config = KeepConfig
    config: KeepConfig

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        flat = _flat(delta)
        kept = torch.topk(flat.abs(), kept_count(self.config.keep, flat.numel())).indices
        return _keep_only(delta, kept)


@DEFENSES.register("random-k")
class RandomK(Defense):
    Config = RandomKConfig
    config: RandomKConfig

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        total = sum(d.numel() for d in delta.values())
        count = kept_count(self.config.keep, total)
        kept = torch.randperm(total, generator=generator)[:count]
        return _keep_only(delta, kept, total / count if self.config.rescale else 1.0)


@DEFENSES.register("prune")
class Prune(Defense):
    Config = PruneConfig
    config: PruneConfig

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        out = {}
        for name, d in delta.items():
            removed = math.floor(self.config.fraction * d.numel())
            flat = d.flatten().clone()
            flat[torch.topk(flat.abs(), removed, largest=False).indices] = 0
            out[name] = flat.view_as(d)
        return out
