"""Where a command's wall time goes: named phases, summed in this process (``fedleak run --verbose``).

The phases of a run nest: on the inline runner a round's attacks and their scoring run inside the
round, so the rows are where the time went, not parts of one sum. Phases of other processes (Ray's
client actors and attack workers) show only as the wait they cause here (in ``rounds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Phase:
    """One phase's total wall seconds over ``count`` spans (a round each, an attack batch each, …)."""

    name: str
    seconds: float = 0.0
    count: int = 0


class PhaseClock:
    """Thread-safe sums of named spans, in the order the phases first occurred."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[str, Phase] = {}
        self._marks: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            phase = self._phases.setdefault(name, Phase(name))
            phase.seconds += seconds
            phase.count += 1

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``name`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def mark(self, name: str) -> None:
        """Remember now as ``name``: :meth:`since` later measures a span across functions."""
        with self._lock:
            self._marks[name] = time.perf_counter()

    def since(self, mark: str, name: str) -> None:
        """Add the time since ``mark`` (if it was set, and forget it) to ``name``."""
        with self._lock:
            start = self._marks.pop(mark, None)
        if start is not None:
            self.add(name, time.perf_counter() - start)

    def phases(self) -> list[Phase]:
        with self._lock:
            return [Phase(p.name, p.seconds, p.count) for p in self._phases.values()]


PHASES = PhaseClock()
"""This process's clock: the CLI, the simulation and the server add to it."""
