"""The client-side defense pipeline: ordered stages between local training and the server.

A defense changes what leaves the client; the server (and every attack) sees only the
result. Each defense is one module that registers a :class:`Defense` subclass with its
config class. A stage acts at one or more of these seams, each a method with a no-op
default:

* ``private_training`` — local training itself (DP-SGD's per-sample clipping + noise);
* ``apply`` — the update Δ = w_trained − w_sent (clipping + noise, sparsification);
* ``encode``/``decode`` — the update's wire form (the quantizers in :mod:`fedleak.defenses.quantize`);
* ``client_mods`` / ``wrap_strategy`` — Flower's own mechanisms (central DP wrappers and
  ``fixedclipping_mod``; SecAgg+, which also moves the run to Flower's legacy path);
* ``privacy_events`` — the Gaussian mechanisms it applies, for RDP accounting;
* ``check_model`` — whether it can run with the scenario's model (checked before a run).

The pipeline runs the stages in the order the scenario lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from fedleak.core.config import Strict
from fedleak.core.registry import Registry
from fedleak.core.updates import Weights

if TYPE_CHECKING:
    from flwr.clientapp.typing import Mod  # Flower is imported only when a federation runs, not to validate a scenario
    from flwr.serverapp.strategy import Strategy

TrainingWrapper = Callable[[nn.Module, torch.optim.Optimizer], tuple[nn.Module, torch.optim.Optimizer]]
"""Turns (model, optimizer) into the pair local training really uses (e.g. DP-SGD's)."""

# Separates the defenses' random streams from other uses of the scenario seed.
_DEFENSE_STREAM = 0xDEF

@dataclass(frozen=True)
class LocalRound:
    """What a client's round looked like, as far as privacy accounting needs it."""

    shard_size: int
    batch_size: int
    local_steps: int


@dataclass(frozen=True)
class PrivacyEvent:
    """``steps`` applications of the sampled Gaussian mechanism (Mironov et al. 2019).

    ``protects`` says whose view it bounds: ``"update"`` — what the client sends, so
    also against the server; ``"model"`` — only the released aggregate (central DP: the
    server sees the update before the noise).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int
    protects: Literal["update", "model"] = "update"


class Defense:
    """One stage of the pipeline; override the seams it acts at."""

    Config: ClassVar[type[Strict]]
    legacy_path: ClassVar[bool] = False
    """True when Flower runs this defense only on the legacy strategy/NumPyClient path."""
    encoding: ClassVar[str | None] = None
    """The wire encoding this stage produces (quantizers), or ``None``."""
    draws_global_numpy: ClassVar[bool] = False
    """True when its strategy wrapper draws from NumPy's global generator (Flower's DP wrappers do):
    the server then seeds that generator for each round's aggregation, and restores it after."""

    def __init__(self, config: Strict) -> None:
        self.config = config

    def private_training(self, batch_size: int, generator: torch.Generator) -> TrainingWrapper | None:
        """A wrapper that makes local training private, or ``None``."""
        return None

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        """Return the transformed update; ``generator`` seeds any randomness."""
        return delta

    def encode(self, delta: Weights, generator: torch.Generator) -> dict[str, np.ndarray]:
        """The update's wire form (only stages with an ``encoding``)."""
        raise TypeError(f"{type(self).__name__} has no wire encoding")

    @classmethod
    def decode(cls, arrays: dict[str, np.ndarray]) -> Weights:
        """The server's inverse of :meth:`encode`."""
        raise TypeError(f"{cls.__name__} has no wire encoding")

    def client_mods(self) -> list[Mod]:
        """Flower ClientApp mods this defense needs."""
        return []

    def wrap_strategy(self, strategy: Strategy, num_sampled_clients: int) -> Strategy:
        """The server-side Flower strategy wrapper this defense needs."""
        return strategy

    def privacy_events(self, local_round: LocalRound) -> list[PrivacyEvent]:
        """The Gaussian mechanisms one participation applies (none by default)."""
        return []

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise ``ValueError`` (one line) when this defense cannot run with ``model`` (the network,
        named as in the state dict)."""


DEFENSES: Registry[type[Defense]] = Registry("defense")


class DefensePipeline:
    """The scenario's defenses, in order."""

    def __init__(self, stages: Sequence[Defense] = ()) -> None:
        self.stages = list(stages)
        codecs = [i for i, stage in enumerate(self.stages) if stage.encoding]
        if codecs and codecs[0] != len(self.stages) - 1:
            raise ValueError(f"'{self.stages[codecs[0]].encoding}' sets the wire format, so it must be "
                             "the last defense")
        if sum(stage.private_training(1, torch.Generator()) is not None for stage in self.stages) > 1:
            raise ValueError("at most one defense can change local training")
        wrappers = [type(s).__name__ for s in self.stages if type(s).wrap_strategy is not Defense.wrap_strategy]
        if self.legacy_path and wrappers:
            raise ValueError(f"{wrappers[0]} wraps a Message API strategy, but SecAgg+ runs on Flower's legacy path")
        if codecs and (self.legacy_path or self.client_mods()):
            raise ValueError(f"'{self.stages[codecs[0]].encoding}' cannot be combined with a defense that "
                             "runs as a Flower mod (those need float weights in the reply)")

    @classmethod
    def from_components(cls, components: Sequence[tuple[str, Strict]]) -> DefensePipeline:
        return cls([DEFENSES.get(name)(config) for name, config in components])

    @staticmethod
    def generator(seed: int, partition_id: int, server_round: int) -> torch.Generator:
        """The defenses' random stream for one (client, round): reproducible, independent."""
        state = np.random.SeedSequence([seed, _DEFENSE_STREAM, partition_id, server_round])
        return torch.Generator().manual_seed(int(state.generate_state(1)[0]))

    @property
    def legacy_path(self) -> bool:
        return any(stage.legacy_path for stage in self.stages)

    @property
    def draws_global_numpy(self) -> bool:
        return any(stage.draws_global_numpy for stage in self.stages)

    @property
    def encoding(self) -> str | None:
        """The wire encoding of the reply; ``None`` means plain float32 weights."""
        return self.stages[-1].encoding if self.stages else None

    def private_training(self, batch_size: int, generator: torch.Generator) -> TrainingWrapper | None:
        """The (single) stage that changes local training, if any."""
        wrappers = (stage.private_training(batch_size, generator) for stage in self.stages)
        return next((wrapper for wrapper in wrappers if wrapper is not None), None)

    def apply(self, delta: Weights, generator: torch.Generator) -> Weights:
        for stage in self.stages:
            delta = stage.apply(delta, generator)
        return delta

    def encode(self, delta: Weights, generator: torch.Generator) -> dict[str, np.ndarray]:
        """The wire form of ``delta`` (call only when :attr:`encoding` is set)."""
        return self.stages[-1].encode(delta, generator)

    def client_mods(self) -> list[Mod]:
        return [mod for stage in self.stages for mod in stage.client_mods()]

    def wrap_strategy(self, strategy: Strategy, num_sampled_clients: int) -> Strategy:
        for stage in self.stages:
            strategy = stage.wrap_strategy(strategy, num_sampled_clients)
        return strategy

    def privacy_events(self, local_round: LocalRound) -> list[PrivacyEvent]:
        return [event for stage in self.stages for event in stage.privacy_events(local_round)]
