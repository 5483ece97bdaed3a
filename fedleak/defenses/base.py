"""The client-side defense pipeline: ordered stages applied to the update Δ.

A defense transforms what leaves the client; the server (and every attack) sees only
the result. Each defense is one module that registers a :class:`Defense` subclass
with its config class; the pipeline applies them in the order the scenario lists.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from fedleak.config import Strict
from fedleak.registry import Registry
from fedleak.updates import Weights

# Separates the defenses' random streams from other uses of the scenario seed.
_DEFENSE_STREAM = 0xDEF


class Defense(ABC):
    """One stage of the pipeline."""

    Config: ClassVar[type[Strict]]

    def __init__(self, config: Strict) -> None:
        self.config = config

    @abstractmethod
    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        """Return the transformed update; ``generator`` seeds any randomness."""


DEFENSES: Registry[type[Defense]] = Registry("defense")


class DefensePipeline:
    """The scenario's defenses, in order."""

    def __init__(self, stages: Sequence[Defense] = ()) -> None:
        self.stages = list(stages)

    @classmethod
    def from_components(cls, components: Sequence[tuple[str, Strict]]) -> DefensePipeline:
        return cls([DEFENSES.get(name)(config) for name, config in components])

    def apply(self, delta: Weights, seed: int, partition_id: int, server_round: int) -> Weights:
        """Apply every stage; randomness is seeded per (seed, client, round)."""
        state = np.random.SeedSequence([seed, _DEFENSE_STREAM, partition_id, server_round])
        generator = torch.Generator().manual_seed(int(state.generate_state(1)[0]))
        for stage in self.stages:
            delta = stage.apply(delta, generator)
        return delta
