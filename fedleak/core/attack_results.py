"""What the adversary reports and the store keeps: an attack's status and result, ε.

Plain records (no behaviour), so the store, the progress display and the adversary
share them without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AttackStatus = Literal["ok", "unscored", "failed", "not applicable", "cancelled"]
"""How an attack on one update ended. ``ok``: it returned a reconstruction, scored against
the client's real samples; ``unscored``: it returned one, but the server has no ground truth
to score it against (an attached app's client that does not report its samples), so it is
stored whole and nothing else; ``not applicable``: it cannot read this update or model
(never run, or it raised :class:`AttackNotApplicable`); ``cancelled``: the run ended before
it finished (``runner.wait = false``)."""


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
    random_query: bool = False
    """The attacked update answered a random-parameter query (a malicious server's)."""
    batch_seconds: float | None = None
    """Wall time of the whole batch this attack ran in (``None``: it did not run)."""
    batch_size: int = 1
    """Attacks solved together in that batch."""
    attack_config: dict[str, Any] = field(default_factory=dict)
    """The attack's whole config as it ran (its defaults filled in)."""
    variant: str | None = None
    """An offline re-attack's label (``fedleak attack``: its ``--set`` overrides, e.g.
    ``iterations=8000``); ``None`` for the scenario's own attacks, run during the federation."""
