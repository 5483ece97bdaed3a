"""The sweep's progress view: one row per arm, its rounds as a bar.

On a terminal it is a live table; otherwise (a log, CI) one line each time an arm
changes status or completes a round.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from fedleak.results.rows import RunStatus

if TYPE_CHECKING:
    from fedleak.sweep.schema import Sweep

SKIPPED: Final = "skipped"
"""An arm's outcome when it had finished before the sweep started (beside the statuses of a run)."""
_COLOURS = {RunStatus.FINISHED: "green", SKIPPED: "green", RunStatus.FAILED: "red", RunStatus.INTERRUPTED: "yellow",
            RunStatus.RUNNING: "cyan"}
_BAR = 20
"""Cells of the rounds bar (one per round up to this many rounds)."""


@dataclass
class _Row:
    status: str = "queued"
    rounds: int = 0
    done: int = 0
    accuracy: float | None = None
    attacks: dict[str, int] = field(default_factory=dict)
    note: str = ""


class SweepView:
    """Arms × rounds, live on a terminal or as lines in a log."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.rows: dict[str, _Row] = {}
        self._live: Live | None = None

    def start(self, sweep: Sweep, skipped: Collection[str], rerun: Mapping[str, str]) -> None:
        """Show every arm: ``skipped`` ones finished before, ``rerun`` ones run again (with why)."""
        self.rows = {arm: _Row(rounds=scenario.federation.rounds) for arm, scenario in sweep.arms.items()}
        for arm in skipped:
            self.rows[arm].status, self.rows[arm].note = SKIPPED, "finished before"
        for arm, state in rerun.items():
            self.rows[arm].note = {"changed": "its scenario changed: running again"}.get(
                state, f"{state} before: running again")
        self.console.print(f"fedleak: sweep [bold]{escape(sweep.name)}[/]: {len(sweep.arms)} arms, "
                           f"{len(skipped)} finished before")
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=2)
            self._live.start()
        else:
            for arm in skipped:
                self._line(arm)

    def update(self, arm: str, status: str, progress: dict[str, Any], error: str | None = None) -> None:
        row = self.rows[arm]
        before = (row.status, row.done)
        row.status = status
        row.done = int(progress.get("round") or row.done)
        row.accuracy = progress.get("accuracy", row.accuracy)
        row.attacks = dict(progress.get("attacks") or row.attacks)
        if error:
            row.note = error
        if self._live is not None:
            self._live.update(self._table())
        elif (row.status, row.done) != before:
            self._line(arm)

    def stop(self) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.stop()
            self._live = None

    def _line(self, arm: str) -> None:
        row = self.rows[arm]
        accuracy = "" if row.accuracy is None else f", test accuracy {row.accuracy:.1%}"
        note = f" ({escape(row.note)})" if row.note else ""
        self.console.print(f"  {escape(arm)}: [{_COLOURS.get(row.status, 'white')}]{row.status}[/], "
                           f"round {row.done}/{row.rounds}{accuracy}{note}")

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False)
        for column in ("arm", "status", "rounds", "test acc", "attacks", ""):
            table.add_column(column)
        for arm, row in self.rows.items():
            table.add_row(escape(arm), f"[{_COLOURS.get(row.status, 'white')}]{row.status}[/]", _bar(row),
                          "" if row.accuracy is None else f"{row.accuracy:.1%}",
                          ", ".join(f"{n} {status}" for status, n in sorted(row.attacks.items())),
                          escape(row.note))
        return table


def _bar(row: _Row) -> str:
    """``■■■□□ 3/5``: one cell per round (scaled beyond ``_BAR`` rounds)."""
    cells = min(row.rounds, _BAR)
    filled = cells if row.status in (RunStatus.FINISHED, SKIPPED) else row.done * cells // max(row.rounds, 1)
    return f"{'■' * filled}{'□' * (cells - filled)} {row.rounds if row.status == SKIPPED else row.done}/{row.rounds}"
