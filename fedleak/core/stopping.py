"""A process-wide request to stop the running federation (set by a signal handler).

Flower-free and signal-free: :mod:`fedleak.federation.interrupts` sets it when the first
Ctrl-C or SIGTERM arrives; the server reads it between rounds and before it submits
attacks, so a stop never cuts a round's bookkeeping in half.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fedleak.core.errors import RunInterrupted


class StopRequest:
    """Set once; every later read sees it (and the reason) until :meth:`clear`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._stoppers: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raises:
            RunInterrupted: a stop was requested."""
        if self._event.is_set():
            raise RunInterrupted(self.reason)

    def on_force(self, stop: Callable[[str], None]) -> None:
        """Register what ends a run from outside its thread (:meth:`force`), until :meth:`forget`."""
        with self._lock:
            self._stoppers.append(stop)

    def forget(self, stop: Callable[[str], None]) -> None:
        with self._lock:
            if stop in self._stoppers:
                self._stoppers.remove(stop)

    @property
    def pending(self) -> bool:
        """Whether a run registered with :meth:`on_force` has not ended yet."""
        with self._lock:
            return bool(self._stoppers)

    def force(self) -> None:
        """End every registered run now with the request's reason (its server thread is stuck)."""
        with self._lock:
            stoppers = list(self._stoppers)
        for stop in stoppers:
            stop(self.reason)

    def clear(self) -> None:
        """Forget a request (a new run in the same process, e.g. in tests)."""
        self._event.clear()
        self.reason = ""


STOP = StopRequest()
"""The one request of this process: a signal stops every run the process drives."""
