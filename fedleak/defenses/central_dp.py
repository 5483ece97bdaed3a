"""Central differential privacy with Flower's fixed-clipping wrappers (McMahan et al. 2018).

``clipping = "server"`` wraps the strategy in ``DifferentialPrivacyServerSideFixedClipping``;
``"client"`` in ``DifferentialPrivacyClientSideFixedClipping`` with ``fixedclipping_mod`` on
every ClientApp. Either way Flower adds N(0, (z·C/m)²) to the mean of the m sampled
clients' clipped updates.

The noise protects the *released* global model, not the updates: the server sees each
update before the noise (and, with server-side clipping, before the clipping), so the
adversarial strategy sits outside the wrapper and attacks exactly that. The ε reported
is therefore the model's (``protects = "model"``), per participation with no
amplification by sampling, as Flower's own accountant assumes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from fedleak.core.config import Strict
from fedleak.defenses.base import DEFENSES, Defense, LocalRound, PrivacyEvent

if TYPE_CHECKING:
    from flwr.clientapp.typing import Mod  # Flower is imported only when a federation runs, not to validate a scenario
    from flwr.serverapp.strategy import Strategy

_WRAPPERS = {"server": "DifferentialPrivacyServerSideFixedClipping",
             "client": "DifferentialPrivacyClientSideFixedClipping"}


class CentralDPConfig(Strict):
    clipping: Literal["server", "client"] = "server"
    noise_multiplier: float = Field(1.0, ge=0)
    clip_norm: float = Field(1.0, gt=0)


@DEFENSES.register("central-dp")
class CentralDP(Defense):
    Config = CentralDPConfig
    config: CentralDPConfig
    draws_global_numpy = True  # Flower's wrappers add np.random.normal noise

    def client_mods(self) -> list[Mod]:
        from flwr.clientapp.mod import fixedclipping_mod

        return [fixedclipping_mod] if self.config.clipping == "client" else []

    def wrap_strategy(self, strategy: Strategy, num_sampled_clients: int) -> Strategy:
        from flwr.serverapp import strategy as flower_strategies

        wrapper = getattr(flower_strategies, _WRAPPERS[self.config.clipping])
        wrapped: Strategy = wrapper(strategy, self.config.noise_multiplier, self.config.clip_norm, num_sampled_clients)
        return wrapped

    def privacy_events(self, local_round: LocalRound) -> list[PrivacyEvent]:
        return [PrivacyEvent(self.config.noise_multiplier, 1.0, 1, protects="model")]
