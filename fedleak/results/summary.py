"""What a run's store says under its per-round table: how its replies and attacks ended.

Named reads over the store's schema (``fedleak results`` prints them), so that no SQL and no
status string lives outside :mod:`fedleak.results`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from fedleak.results.rows import AttackStatus, ReplyStatus
from fedleak.results.store import ResultStore

Status = TypeVar("Status", AttackStatus, ReplyStatus)

_ATTACK_COUNTS = f"""
SELECT {", ".join(f"SUM(status = '{status}') AS {status.name.lower()}" for status in AttackStatus)}
FROM attack_results WHERE run_id = ?"""
"""One count per :class:`AttackStatus`, named by the member (``ok``, …, ``not_applicable``)."""
_WARNINGS = """
SELECT COUNT(*) AS warned, MIN(warning) AS first FROM updates WHERE run_id = ? AND warning IS NOT NULL"""
_SANITY = """
SELECT SUBSTR(sanity, 1, INSTR(sanity, ':') - 1) AS verdict, COUNT(*) AS n, MIN(rowid),
       round, partition_id AS client, sanity AS first
FROM updates WHERE run_id = ? AND sanity IS NOT NULL GROUP BY verdict ORDER BY verdict"""
"""Per verdict its count and its first update (SQLite takes bare columns from the MIN(rowid) row)."""
_REPLY_COUNTS = f"""
SELECT SUM(status IS NULL OR status = '{ReplyStatus.ACCEPTED}') AS accepted,
       SUM(status = '{ReplyStatus.REJECTED}') AS rejected, SUM(status = '{ReplyStatus.FAILED}') AS failed
FROM updates WHERE run_id = ?"""
"""A database older than the ``status`` column stored accepted replies only (NULL)."""


@dataclass(frozen=True)
class SanityVerdictCount:
    """How many lab updates got one sanity verdict, and the first of them."""

    verdict: str
    count: int
    round: int
    client: int
    first: str
    """The first such update's whole verdict line."""


@dataclass(frozen=True)
class RunSummary:
    """A run's replies (accepted, rejected, failed; accepted with warnings), its lab updates'
    sanity verdicts, and its attacks by how they ended."""

    replies: dict[ReplyStatus, int]
    warned: int
    first_warning: str | None
    sanity: list[SanityVerdictCount]
    attacks: dict[AttackStatus, int]


def run_summary(store: ResultStore, run_id: str) -> RunSummary:
    """The counts ``fedleak results`` prints for ``run_id`` (0 where nothing was stored)."""
    warnings = store.query(_WARNINGS, run_id)[0]
    return RunSummary(
        replies=_counts(ReplyStatus, store.query(_REPLY_COUNTS, run_id)[0]),
        warned=int(warnings["warned"]), first_warning=warnings["first"],
        sanity=[SanityVerdictCount(row["verdict"], row["n"], row["round"], row["client"], row["first"])
                for row in store.query(_SANITY, run_id)],
        attacks=_counts(AttackStatus, store.query(_ATTACK_COUNTS, run_id)[0]),
    )


def _counts(statuses: type[Status], row: dict[str, Any]) -> dict[Status, int]:
    """Each status's count from its column (named by the member); SQLite's SUM over no rows is NULL: 0."""
    return {status: int(row[status.name.lower()] or 0) for status in statuses}
