"""The crafting interface and registry: what a malicious server sends instead of the global model.

A crafting is one module that registers its class by name, like an attack; its ``Config``
(pydantic) holds the malicious rounds and every knob, validated from the scenario's
``[crafting]`` table. In a malicious round the adversary asks it for the weights to send —
once for the round, or once per client where :attr:`Crafting.per_client` says the weights
differ by client — and the round's aggregate is not applied: the global model stays as it
was, so utility is that of the honest rounds. The updates that answer crafted weights are
marked with the crafting's name (:attr:`~fedleak.core.updates.ClientUpdate.crafted`), so
the attacks that read them (:class:`~fedleak.attacks.Requirement`) find them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, ClassVar

from pydantic import Field

from fedleak.core.config import Strict
from fedleak.core.registry import Registry
from fedleak.core.updates import Weights
from fedleak.models import ModelSpec


class CraftingConfig(Strict):
    """Options every crafting has."""

    rounds: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    """The malicious rounds: crafted weights are sent in these, the global model in the others."""


@dataclass(frozen=True)
class CraftRequest:
    """One set of weights to craft: the round, a seed fresh for it (reproducible per run), and
    the client it goes to (``None`` for a crafting whose weights are the same for every client)."""

    server_round: int
    seed: int
    node_id: int | None = None


class Crafting(ABC):
    """A malicious server's weights for the rounds its config names.

    Subclasses set ``Config`` (a :class:`CraftingConfig`) and ``per_client``, and implement
    :meth:`craft`.
    """

    Config: ClassVar[type[CraftingConfig]] = CraftingConfig
    per_client: ClassVar[bool] = False
    """Whether each client gets its own weights (:meth:`craft` is asked once per client)."""

    def __init__(self, config: CraftingConfig) -> None:
        self.config = config

    def crafts(self, server_round: int) -> bool:
        """Whether ``server_round`` is one of the malicious rounds."""
        return server_round in self.config.rounds

    @abstractmethod
    def craft(self, model: ModelSpec, global_weights: Weights, request: CraftRequest) -> Weights:
        """A full ``state_dict`` for ``model`` to send instead of ``global_weights``."""


CRAFTINGS: Registry[type[Crafting]] = Registry("crafting")
