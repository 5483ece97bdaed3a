"""What the store keeps: the status vocabularies of its tables and the records other layers fill in.

The store owns its schema, so the values its ``status`` columns take are named here and
nowhere else: the server, the runners and the commands use these members, never the strings.
:class:`AttackResult` and :class:`RejectedReply` are plain records (no behaviour), so the
runners, the adversary, the progress display and the store share them without importing
one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    """A run's row (``runs.status``)."""

    RUNNING = "running"
    """Started, and not ended: a process is writing it, or one died without ending it."""
    FINISHED = "finished"
    """Every round completed."""
    FAILED = "failed"
    """It stopped on an error (stored with the row's ``error``), or trained nothing."""
    INTERRUPTED = "interrupted"
    """Stopped on a signal after a completed round: ``fedleak resume`` continues it."""


class ReplyStatus(StrEnum):
    """A client's reply (``updates.status``)."""

    ACCEPTED = "accepted"
    """Aggregated and captured."""
    REJECTED = "rejected"
    """It failed the server's checks: never aggregated or attacked."""
    FAILED = "failed"
    """The client reported an error instead of training."""


class AttackStatus(StrEnum):
    """How an attack on one update ended (``attack_results.status``)."""

    OK = "ok"
    """It returned a reconstruction, scored against the client's real samples."""
    UNSCORED = "unscored"
    """It returned one, but the server has no ground truth to score it against (an attached
    app's client that does not report its samples): stored whole and nothing else."""
    FAILED = "failed"
    """It raised, or scoring or storing its result did (the row's ``error`` says which)."""
    NOT_APPLICABLE = "not applicable"
    """It cannot read this update or model (never run, or it raised ``AttackNotApplicable``)."""
    CANCELLED = "cancelled"
    """The run ended before it finished (``runner.wait = false``)."""


@dataclass(frozen=True)
class Epsilon:
    """ε at the ledger's δ; ``None`` where no accounted mechanism applies."""

    update: float | None = None
    """Against anyone who sees the client's update, the server included."""
    model: float | None = None
    """Against anyone who sees only the released global model."""


NO_EPSILON = Epsilon()


@dataclass
class AttackResult:
    """One attack on one captured update, scored (or not, with its reason)."""

    run_id: str
    server_round: int
    node_id: int
    partition_id: int
    attack: str
    status: AttackStatus
    seconds: float
    """This attack's share of the time of the batch it ran in (the batch's wall time / its size)."""
    metrics: dict[str, float | None] = field(default_factory=dict)
    num_reconstructed: int = 0
    num_ground_truth: int = 0
    error: str | None = None
    threat: dict[str, Any] = field(default_factory=dict)
    defenses: list[dict[str, Any]] = field(default_factory=list)
    epsilon: float | None = None
    """ε of the attacked update against the server (None: no accounted guarantee)."""
    model_epsilon: float | None = None
    """ε of the released global model up to this round."""
    extras: dict[str, Any] = field(default_factory=dict)
    crafted: str | None = None
    """The crafting a malicious server sent the attacked update's client (``None``: the global model)."""
    batch_seconds: float | None = None
    """Wall time of the whole batch this attack ran in (``None``: it did not run)."""
    batch_size: int = 1
    """Attacks solved together in that batch."""
    attack_config: dict[str, Any] = field(default_factory=dict)
    """The attack's whole config as it ran (its defaults filled in)."""
    variant: str | None = None
    """An offline re-attack's label (``fedleak attack``: its ``--set`` overrides, e.g.
    ``iterations=8000``); ``None`` for the scenario's own attacks, run during the federation."""


@dataclass(frozen=True)
class RejectedReply:
    """A reply the server did not accept: kept out of aggregation and attacks, stored with why
    (:attr:`ReplyStatus.REJECTED`: it failed the server's checks; :attr:`ReplyStatus.FAILED`: the
    client reported an error instead of training)."""

    run_id: str
    server_round: int
    node_id: int
    partition_id: int | None
    """The partition the reply declared, when that was a valid id."""
    status: ReplyStatus
    reason: str


@dataclass(frozen=True)
class LayerVisibility:
    """What an honest client could notice in one tensor of crafted weights (:mod:`fedleak.crafting.visibility`)."""

    layer: str
    norm: float
    std: float
    max_abs: float
    relative_change: float | None
    std_over_init: float | None
