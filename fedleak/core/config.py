"""Plain configuration records shared by the library (validated by pydantic).

These carry no behaviour and import nothing from fedleak, so any module can depend on
them. :mod:`fedleak.scenario` composes them into a whole :class:`~fedleak.scenario.Scenario`
and adds the checks that need the component registries.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base for every config record: unknown keys are errors, values are re-validated, and
    no number is infinite or NaN (an infinite budget or learning rate validates but breaks
    the run later, after Ray has started)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)


MAX_SEED = 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
"""A random seed: numpy's seed sequences take no negative numbers, torch's generators
nothing beyond 64 bits, and derived seeds (seed × 1,000,003 + round) must stay within both."""

Width = Annotated[int, Field(ge=1, le=65_536)]
"""A layer's width or channel count (0 would build an empty layer that fails at the first step)."""


class DatasetConfig(Strict):
    """What every dataset's config has; each dataset's own ``Config`` adds its options.

    The whole config is the loader's cache key, so a dataset option can never be dropped
    between the scenario and the loaded data."""

    name: str = "digits"
    normalization: Literal["channel", "pixel"] = "channel"
    """What the model subtracts from its input: the training pool's per-channel mean, or its
    per-pixel mean (Haim et al.'s preprocessing, which the ``kkt`` attack needs); both then
    divide by the per-channel std."""

    @property
    def source(self) -> str:
        """Where the data comes from, for messages (a file or folder, where the dataset reads one)."""
        return f"dataset {self.name}"


class PartitionConfig(Strict):
    """What every partitioner's config has (the split of the training pool among clients)."""

    name: str = "iid"
    num_clients: int = Field(4, ge=1, le=10_000)


MAX_PARAMETERS = 200_000_000
"""The largest model a run or an audit takes: 800 MB per float32 copy; the server holds several per
client and round (and the audit several float64 ones)."""
MAX_LR = 1000.0
"""Steps this large move weights by orders of magnitude more than their scale (a typo, not a
study); a smaller rate that still diverges is caught at the server, as non-finite replies."""
MAX_LOCAL_STEPS = 1_000_000
MAX_ROUNDS = 100_000


class TrainingConfig(Strict):
    """What the server configures for local training (and therefore knows)."""

    algorithm: Literal["fedsgd", "fedavg"] = "fedsgd"
    lr: float = Field(0.1, gt=0, le=MAX_LR)
    batch_size: int = Field(1, ge=1, le=1_000_000)
    local_epochs: int = Field(1, ge=1, le=1_000_000)
    """FedAvg: passes over the shard (ignored when ``local_steps`` > 0)."""
    local_steps: int = Field(0, ge=0, le=MAX_LOCAL_STEPS)
    """FedAvg: a fixed number of SGD steps instead of epochs (0 = use epochs)."""


class FederationConfig(Strict):
    rounds: int = Field(3, ge=1, le=MAX_ROUNDS)
    fraction_train: float = Field(1.0, gt=0, le=1)
    client_cpus: float = Field(1.0, gt=0)
    """CPU cores Ray reserves per simulated client."""
    test_samples: int = Field(500, ge=1, le=10_000_000)
    """Test images for the server-side utility metric (global-model accuracy)."""


class CaptureConfig(Strict):
    """Which captured updates the server attacks and keeps (every update is recorded in the database)."""

    rounds: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    """Rounds to attack; empty means every round."""
    clients: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    """Partition ids to attack; empty means every client."""
    store: Literal["attacked", "all", "none"] = "attacked"
    """Which captured updates are kept on disk (``captures/`` in the run directory), for
    ``fedleak resume`` and later re-attacks: those the filters above select for the
    scenario's attacks (none without attacks), every accepted update, or none (a killed
    run's unfinished attacks are then lost)."""

    def keeps(self, attacked: bool) -> bool:
        """Whether an update (``attacked``: selected by the filters) is stored on disk."""
        return self.store == "all" or (self.store == "attacked" and attacked)

    def selects(self, server_round: int, partition_id: int | None) -> bool:
        """``partition_id`` ``None`` is an aggregate: only the round filter applies."""
        return (not self.rounds or server_round in self.rounds) and (
            partition_id is None or not self.clients or partition_id in self.clients
        )


class AppConfig(Strict):
    """A user's own Flower app, attached with :func:`fedleak.attach`: what its server knows
    of the clients' inputs and training beyond the model itself.

    The training values override what the replies declare and what the server's train config
    sent (``None``: take them from there; see :mod:`fedleak.federation.attached`)."""

    image_shape: tuple[Width, Width, Width]
    """The clients' images (C, H, W)."""
    num_classes: int = Field(ge=2, le=1_000_000)
    mean: tuple[float, ...] = (0.0,)
    """What the clients subtract from [0, 1] images: one value for every channel, one per
    channel, or one per pixel (C·H·W, row-major)."""
    std: tuple[Annotated[float, Field(gt=0)], ...] = (1.0,)
    """What they then divide by: one value, or one per channel."""
    lr: float | None = Field(None, gt=0, le=MAX_LR)
    batch_size: int | None = Field(None, ge=1)
    local_epochs: int | None = Field(None, ge=1)
    local_steps: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _statistics_fit_the_images(self) -> AppConfig:
        channels, height, width = self.image_shape
        if len(self.mean) not in (1, channels, channels * height * width):
            raise ValueError(f"mean: {len(self.mean)} values for {channels}-channel images "
                             f"(give 1, {channels} or {channels * height * width})")
        if len(self.std) not in (1, channels):
            raise ValueError(f"std: {len(self.std)} values for {channels}-channel images (give 1 or {channels})")
        return self

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) as a model normalises: a single value repeated for every channel."""
        channels = self.image_shape[0]
        return (self.mean * channels if len(self.mean) == 1 else self.mean,
                self.std * channels if len(self.std) == 1 else self.std)


class ThreatModel(Strict):
    """What the server is and knows beyond the protocol (stored with every result)."""

    server: Literal["honest-but-curious", "malicious"] = "honest-but-curious"
    known_labels: bool = False
    """Capability flag: the attacker is given the true labels of the batch."""

    @model_validator(mode="before")
    @classmethod
    def _random_query_moved(cls, table: Any) -> Any:
        if isinstance(table, dict) and "random_query" in table:
            raise ValueError('random_query: now a crafting: [crafting] name = "random-query" with its rounds')
        return table


class AccountingConfig(Strict):
    """How privacy loss is reported (see :mod:`fedleak.adversary.privacy`)."""

    delta: float = Field(1e-5, gt=0, lt=1)
    """δ of the (ε, δ) guarantee reported per round and per result."""


class RunnerConfig(Strict):
    """What every attack runner's config has (:mod:`fedleak.runners`)."""

    name: str = "inline"
    """``inline``: each attack runs at once in the server process; ``ray``: on a pool of worker actors."""
    wait: bool = True
    """At the end of the run, finish every submitted attack (drain), or cancel what is left."""
    max_batch: int = Field(64, ge=1)
    """At most this many attacks of one kind against one round's model (clients × their
    restarts) run as one vectorised optimisation, where the attack supports it; 1: one by one."""
