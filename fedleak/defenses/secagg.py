"""Secure aggregation with Flower's SecAgg+ (Bell et al. 2020): ``secaggplus_mod`` on the
client, ``SecAggPlusWorkflow`` on the server.

In flwr 1.41 SecAgg+ runs only on the legacy strategy/NumPyClient path, so this
defense moves the run there (:mod:`fedleak.federation.secagg_path`). Each client weights
its parameters by n/``max_weight`` (n = its examples), clips them to ±``clipping_range``,
quantizes them stochastically to [0, ``quantization_range``), and adds pairwise and
private masks modulo ``modulus_range``. The server sees those masked vectors one by
one, then unmasks only their sum; :mod:`fedleak.federation.secagg_capture` taps both.

The config repeats Flower's own checks of these parameters, so that a scenario is
validated without importing Flower (``tests/test_defenses.py`` holds them to Flower's).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from fedleak.core.config import Strict
from fedleak.defenses.base import DEFENSES, Defense

if TYPE_CHECKING:  # Flower only when a federation runs
    from flwr.clientapp.typing import Mod


class SecAggPlusConfig(Strict):
    """SecAgg+ parameters, with Flower's defaults and meanings."""

    num_shares: int | float = Field(1.0, gt=0)
    """Shares per secret: an int > 2, or a fraction of the sampled clients."""
    reconstruction_threshold: int | float = Field(0.7, gt=0)
    """Shares needed to reconstruct: an int, or a fraction of ``num_shares``."""
    clipping_range: float = Field(8.0, gt=0)
    quantization_range: int = Field(2**22, gt=1)
    modulus_range: int = Field(2**32, gt=1)
    max_weight: float | None = Field(None, gt=0)
    """Largest client weight (examples per round); ``None``: derived from the training
    config, so that clients' weights n/max_weight stay near 1 and quantization fine."""
    timeout: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _flower_accepts(self) -> SecAggPlusConfig:
        """What ``SecAggPlusWorkflow`` would reject (flwr 1.41's ``_check_init_params``)."""
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if isinstance(shares, int) and shares == 2:
            raise ValueError("num_shares: as an integer it must be greater than 2 (or 1)")
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            raise ValueError("reconstruction_threshold: as a float it must be in (0, 1]")
        if isinstance(threshold, int) and threshold != 1 and isinstance(shares, int) and shares != 1 \
                and threshold >= shares:
            raise ValueError("reconstruction_threshold: must be less than num_shares")
        if self.modulus_range <= self.quantization_range:
            raise ValueError("modulus_range: must be greater than quantization_range")
        if self.modulus_range & (self.modulus_range - 1):
            raise ValueError("modulus_range: must be a power of 2")
        return self

    def workflow_parameters(self, max_weight: float) -> dict[str, Any]:
        return {**self.model_dump(exclude={"max_weight"}), "max_weight": self.max_weight or max_weight}


@DEFENSES.register("secagg-plus")
class SecAggPlus(Defense):
    Config = SecAggPlusConfig
    config: SecAggPlusConfig
    legacy_path = True

    def client_mods(self) -> list[Mod]:
        from flwr.client.mod import secaggplus_mod  # Flower only when a federation runs

        return [secaggplus_mod]
