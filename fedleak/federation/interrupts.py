"""Ctrl-C and SIGTERM in a process that drives a run (``fedleak run``, ``fedleak resume``, a sweep's arm).

The first signal requests a stop (:data:`~fedleak.core.stopping.STOP`): the server starts
no new round and no new attack, and ends its run as ``interrupted`` (queued and running
attacks stored as cancelled) as soon as its thread next looks — between rounds, or when
the round's replies are in. A watchdog gives it :data:`GRACE_S`; a server still waiting
for a round then has its run ended from the watchdog (the round's rows were never
committed, and a resume runs it again). Ray is shut down (bounded by :data:`SHUTDOWN_S`)
and the process exits 130 at once, without waiting for Flower's simulation threads (one
of which, non-daemon, otherwise holds the interpreter in ``threading._shutdown``). A second
signal exits 130 immediately. SIGTERM is handled like Ctrl-C: containers stop with it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

from fedleak.core.stopping import STOP

GRACE_S = 3.0
"""How long the server thread may take to end its run itself after the first signal."""
SHUTDOWN_S = 3.0
"""How long Ray may take to shut down before the process exits anyway."""
EXIT_INTERRUPTED = 130


def install() -> None:
    """Handle SIGINT and SIGTERM as above (only the main thread can install handlers: elsewhere, nothing).

    Ray's core worker would replace the SIGTERM handler when this process joins Ray (Abseil's
    failure-signal handler: it logs and aborts, exit -6); it is told not to. The variable is
    passed on to the Ray processes started from here, which then print no stack trace when
    they crash (Ray still reports the death).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] = "1"
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if STOP.requested:
        _exit()  # the second signal: at once
    STOP.request(f"interrupted by {signal.Signals(signum).name}")
    threading.Thread(target=_stop_and_exit, name="fedleak-stop", daemon=True).start()


def _stop_and_exit() -> None:
    deadline = time.monotonic() + GRACE_S
    while STOP.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    STOP.force()  # whatever run is still open: its server thread is stuck in a round
    shutdown_ray(SHUTDOWN_S)
    _exit()


def shutdown_ray(timeout_s: float) -> None:
    """``ray.shutdown()`` if this process started or joined Ray, waiting at most ``timeout_s``."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    stopper = threading.Thread(target=ray.shutdown, name="fedleak-ray-shutdown", daemon=True)
    stopper.start()
    stopper.join(timeout_s)


def _exit() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(EXIT_INTERRUPTED)


def hold_if_stopping() -> None:
    """After a run returned: if a stop was requested, wait for its watchdog to end the process
    (so nothing after the run, e.g. a results table, reads as a normal end); exit 130 if it does not."""
    if STOP.requested:
        time.sleep(GRACE_S + SHUTDOWN_S + 1.0)
        _exit()
