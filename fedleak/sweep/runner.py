"""Run a sweep: each arm in its own process and run directory, N at a time, resumable.

The sweep directory is ``<out>/<sweep name>``: running the same command again finds it,
skips the arms that finished with the same scenario and runs the others again — those
that failed, were interrupted (their process died: the store still says ``running``) or
whose scenario changed. An earlier attempt is never deleted: it moves to
``.attempts/<arm>-<n>`` first, so no stored result is lost and none is duplicated.

Arms run as child processes (:mod:`fedleak.sweep.arm`), each in its own session so a
crash or a kill stays inside it. Each starts its own local Ray with its share of the CPUs
for its clients and (with ``runner.name = "ray"``) its attacks; a ``runner.address``
sends every arm's attacks to that one cluster. Flower 1.41's simulation sizes its client
actor pool to a whole cluster's CPUs, so two simulations on one Ray cluster could each
hold actors the other waits for: that is why the arms do not share one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from fedleak.core.errors import FedleakError
from fedleak.results.collection import SWEEP_FILE
from fedleak.results.lock import DirectoryLock
from fedleak.results.rows import RunStatus
from fedleak.results.store import DATABASE, ResultStore, make_private_dir, make_run_dir, write_private
from fedleak.scenario import Scenario
from fedleak.sweep.arm import read_progress
from fedleak.sweep.progress import SKIPPED, SweepView
from fedleak.sweep.schema import Sweep

ArmState: TypeAlias = Literal["new", "changed"] | RunStatus
"""An arm's run directory: none yet, a finished run of another scenario, or its run's status."""
_POLL_S = 0.5
_STOP_GRACE_S = 2.0
"""How long an interrupted arm's process may take to stop before it is killed (one was seen to outlive
SIGTERM by more than 5 s); a killed arm is run again, as interrupted, when the sweep resumes."""


def stored_state(run_dir: Path, scenario: Scenario) -> ArmState:
    """What an arm's run directory holds. Called with the sweep's lock held, so a run the
    store still calls ``running`` has no process left: it was interrupted."""
    if not run_dir.exists():
        return "new"
    if not (run_dir / DATABASE).is_file():
        return RunStatus.INTERRUPTED  # its process died before the store opened
    try:
        store = ResultStore.open_existing(run_dir)
    except FedleakError:
        return RunStatus.INTERRUPTED
    try:
        run = store.run_row()
    finally:
        store.close()
    if run is None:
        return RunStatus.INTERRUPTED
    status, stored = run["status"], run["scenario"]
    if status == RunStatus.FINISHED:
        return RunStatus.FINISHED if tomllib.loads(stored) == tomllib.loads(scenario.to_toml()) else "changed"
    return RunStatus.FAILED if status == RunStatus.FAILED else RunStatus.INTERRUPTED


@dataclass
class _Running:
    arm: str
    process: subprocess.Popen[bytes]


class SweepRunner:
    """Runs the arms of ``sweep`` that need it in ``sweep_dir``, ``parallel`` at a time."""

    def __init__(self, sweep: Sweep, sweep_dir: Path, parallel: int, view: SweepView) -> None:
        self.sweep = sweep
        self.sweep_dir = sweep_dir
        self.parallel = parallel
        self.view = view
        self.cpus = max(1, (os.cpu_count() or 1) // parallel)

    def run(self) -> dict[str, str]:
        """Each arm's final status (its run's: finished, failed or interrupted; :data:`SKIPPED`: it had
        finished before). Ctrl-C stops the running arms and raises ``KeyboardInterrupt``."""
        make_private_dir(self.sweep_dir)
        with DirectoryLock(self.sweep_dir, "another fedleak sweep is running there"):
            write_private(self.sweep_dir / SWEEP_FILE, self.sweep.to_toml())
            states = {arm: stored_state(self.sweep_dir / arm, s) for arm, s in self.sweep.arms.items()}
            skipped = {arm: state for arm, state in states.items() if state == RunStatus.FINISHED}
            rerun = {arm: state for arm, state in states.items() if state not in ("new", RunStatus.FINISHED)}
            self.view.start(self.sweep, skipped, rerun)
            outcome = {arm: SKIPPED for arm in skipped}
            outcome.update(self._run_all([arm for arm in states if arm not in skipped]))
            self.view.stop()
            return outcome

    def _run_all(self, queue: list[str]) -> dict[str, str]:
        running: list[_Running] = []
        outcome: dict[str, str] = {}
        try:
            while queue or running:
                while queue and len(running) < self.parallel:
                    running.append(self._start(queue.pop(0)))
                for child in [c for c in running if c.process.poll() is not None]:
                    running.remove(child)
                    outcome[child.arm] = self._finished(child.arm)
                for child in running:
                    self.view.update(child.arm, RunStatus.RUNNING, read_progress(self.sweep_dir / child.arm))
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            for child in running:
                _stop(child.process)
                self.view.update(child.arm, RunStatus.INTERRUPTED, read_progress(self.sweep_dir / child.arm))
            self.view.stop()
            raise
        return outcome

    def _start(self, arm: str) -> _Running:
        run_dir = self.sweep_dir / arm
        if run_dir.exists():
            set_aside(run_dir, self.sweep_dir / ".attempts")
        make_run_dir(run_dir)
        log = os.open(run_dir / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        command = [sys.executable, "-m", "fedleak.sweep.arm", str(self.sweep_dir), arm, "--cpus", str(self.cpus),
                   "--parent", str(os.getpid())]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True)  # a terminal's Ctrl-C reaches only the sweep
        finally:
            os.close(log)
        self.view.update(arm, RunStatus.RUNNING, {})
        return _Running(arm, process)

    def _finished(self, arm: str) -> str:
        run_dir = self.sweep_dir / arm
        state = stored_state(run_dir, self.sweep.arms[arm])
        status = state if state in (RunStatus.FINISHED, RunStatus.FAILED) else RunStatus.INTERRUPTED
        self.view.update(arm, status, read_progress(run_dir), error=_reason(run_dir))
        return status

def _reason(run_dir: Path) -> str | None:
    """Why an arm did not finish: the stored error, else its log's last line."""
    if (run_dir / DATABASE).is_file():
        store = ResultStore.open_existing(run_dir)
        try:
            run = store.run_row()
        finally:
            store.close()
        if run is not None and run["status"] == RunStatus.FINISHED:
            return None
        if run is not None and run["error"]:
            return str(run["error"])
    try:
        lines = (run_dir / "log.txt").read_text(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the arm's process group, then SIGKILL it if it has not stopped in time."""
    for sig, wait in ((signal.SIGTERM, _STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def set_aside(run_dir: Path, attempts: Path) -> Path:
    """Move an earlier attempt of an arm to ``attempts/<arm>-<n>`` (n: the next free number)."""
    make_private_dir(attempts)
    number = 1
    while (attempts / f"{run_dir.name}-{number}").exists():
        number += 1
    return run_dir.rename(attempts / f"{run_dir.name}-{number}")
