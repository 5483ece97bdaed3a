"""One arm of a sweep, in its own process: ``python -m fedleak.sweep.arm SWEEP_DIR ARM [--cpus N] [--parent PID]``.

The sweep runs each arm in a process of its own, so an arm that crashes, hangs or is
killed costs only itself. The arm reads its scenario from the sweep directory's resolved
``sweep.toml``, runs it into ``SWEEP_DIR/ARM`` (made by the sweep) and reports its
progress in ``progress.json`` there, which the sweep's view reads.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

from fedleak.adversary.progress import Progress
from fedleak.core.errors import FedleakError, RunFailed
from fedleak.results.collection import SWEEP_FILE
from fedleak.results.rows import AttackResult
from fedleak.results.store import write_private
from fedleak.scenario import parse_scenario, read_toml

PROGRESS_FILE = "progress.json"


class FileProgress(Progress):
    """Rounds evaluated and attacks finished, rewritten atomically to a JSON file."""

    def __init__(self, path: Path, rounds: int) -> None:
        self.path = path
        self.state: dict[str, object] = {"rounds": rounds, "round": 0, "accuracy": None, "attacks": {}}
        self._write()

    def round_evaluated(self, server_round: int, accuracy: float) -> None:
        self.state.update({"round": server_round, "accuracy": accuracy})
        self._write()

    def attack_finished(self, result: AttackResult) -> None:
        attacks: dict[str, int] = self.state["attacks"]  # type: ignore[assignment]
        attacks[result.status] = attacks.get(result.status, 0) + 1
        self._write()

    def _write(self) -> None:
        partial = self.path.with_suffix(".tmp")
        write_private(partial, json.dumps(self.state))
        partial.replace(self.path)  # atomic: the sweep never reads half a file


def read_progress(run_dir: Path) -> dict[str, object]:
    """What an arm's process last reported (empty before it started)."""
    try:
        progress: dict[str, object] = json.loads((run_dir / PROGRESS_FILE).read_text())
        return progress
    except (OSError, ValueError):
        return {}


def run_arm(sweep_dir: Path, arm: str, cpus: int | None) -> None:
    """Run ``arm`` of the resolved sweep in ``sweep_dir``.

    Raises:
        FedleakError: the arm is not in the sweep, or its scenario no longer validates.
        RunFailed: the run stopped before storing anything.
    """
    scenarios = read_toml(sweep_dir / SWEEP_FILE, "resolved sweep").get("scenarios", {})
    if arm not in scenarios:
        raise FedleakError(f"{sweep_dir / SWEEP_FILE}: no arm '{arm}'")
    scenario = parse_scenario(scenarios[arm], source=f"{sweep_dir / SWEEP_FILE}: arm '{arm}'")
    from fedleak.federation import interrupts, simulate  # Flower and Ray: only once the arm's scenario is valid

    run_dir = sweep_dir / arm
    interrupts.install()  # the sweep stops an arm with SIGTERM: the arm is stored as interrupted
    simulate(scenario, run_dir, FileProgress(run_dir / PROGRESS_FILE, scenario.federation.rounds), cpus=cpus)
    interrupts.hold_if_stopping()


def die_with(parent: int) -> None:
    """End this process when the sweep ``parent`` ends, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``; Ray's own processes share the arm's fate), so a killed sweep
    leaves no arm running on that a resumed sweep would duplicate."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the sweep ended before the request took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedleak.sweep.arm", description=__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("arm")
    parser.add_argument("--cpus", type=int, default=None)
    parser.add_argument("--parent", type=int, default=None, help="the sweep's process id")
    args = parser.parse_args(argv)
    if args.parent is not None:
        die_with(args.parent)
    try:
        run_arm(args.sweep_dir, args.arm, args.cpus)
    except (FedleakError, RunFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, FedleakError) else 1)


if __name__ == "__main__":
    main()
