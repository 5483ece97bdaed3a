"""Start-up, rejection and the quickstart end to end, each a fresh process, paired with plain Flower.

Cases, in turn within each repeat (so a drift of the machine's speed hits them alike):

* ``fedleak --help``;
* ``fedleak run`` on a scenario with a bad section (``training.lr=-1``) and with a bad attack
  option (``attacks.0.iterations=-1``): time to the one error line, and to exit;
* the quickstart (``fedleak run scenarios/quickstart.toml --verbose``): wall, CPU, the time to
  its table and the exit after it, and fedleak's own phases (its ``--verbose`` table);
* ``benchmarks/plain_flower_quickstart.py``: the same federation in plain Flower, no attacks;
* ``python -c "import torch"``: the floor of any process that uses torch.

``--before PATH`` runs the fedleak cases a second time from another checkout of fedleak (run in
that folder, which ``python -m`` puts first on the path), paired run by run: before/after figures
from one session.

    python benchmarks/startup.py [--repeats 3] [--before /tmp/before]

Measured, not asserted: Markdown tables of medians (and min–max) of wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

from process_timing import Timed, timed

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")
PHASE_ROW = re.compile(r"│ (.+?) +│ ([\d.]+) +│ *(\d*) *│")


def fedleak(*argv: str) -> list[str]:
    return [sys.executable, "-m", "fedleak", *argv]


def cases(out: str) -> dict[str, list[str]]:
    return {
        "fedleak --help": fedleak("--help"),
        "rejected: training.lr=-1": fedleak("run", QUICKSTART, "--set", "training.lr=-1"),
        "rejected: attacks.0.iterations=-1": fedleak("run", QUICKSTART, "--set", "attacks.0.iterations=-1"),
        "quickstart": fedleak("run", QUICKSTART, "--out", out, "--verbose"),
    }


FLOORS = {
    "plain Flower quickstart (no attacks)": [sys.executable, str(ROOT / "benchmarks" / "plain_flower_quickstart.py")],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def summary(name: str, runs: list[Timed]) -> str:
    error = [r.first("error:") for r in runs]
    table = [r.first("status:") for r in runs]
    to_line = spread([t for t in error if t is not None]) if all(t is not None for t in error) else "–"
    to_table = spread([t for t in table if t is not None]) if all(t is not None for t in table) else "–"
    exit_after = spread([r.wall_s - r.last_line_s for r in runs])
    codes = "/".join(sorted({str(r.returncode) for r in runs}))
    return (f"| {name} | {codes} | {spread([r.wall_s for r in runs])} | {spread([r.cpu_s for r in runs])} "
            f"| {to_line} | {to_table} | {exit_after} |")


def phases(runs: list[Timed]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for run in runs:
        for _, line in run.lines:
            match = PHASE_ROW.search(line)
            if match and match.group(1).strip() != "phase":
                found.setdefault(match.group(1).strip(), []).append(float(match.group(2)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, default=None, help="another fedleak checkout, run beside this one")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
    versions = {"": None, **({" (before)": args.before.resolve()} if args.before else {})}
    results: dict[str, list[Timed]] = {}
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeats):
            for label, checkout in versions.items():
                for name, command in cases(out).items():
                    results.setdefault(name + label, []).append(timed(command, cwd=str(checkout or ROOT)))
            for name, command in FLOORS.items():
                results.setdefault(name, []).append(timed(command, cwd=str(ROOT)))
            print(f"repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    print("\n| case | exit | wall s | CPU s | to the error line s | to the table s | exit after the last line s |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        print(summary(name, runs))
    ratio = [a.wall_s / b.wall_s for a, b in zip(results["quickstart"], results[next(iter(FLOORS))], strict=True)]
    print(f"\nquickstart / plain Flower quickstart, wall, pair by pair: {spread(ratio)}")
    print("\n| fedleak phase (quickstart, --verbose) | s |")
    print("|---|---|")
    for name, values in phases(results["quickstart"]).items():
        print(f"| {name} | {spread(values)} |")


if __name__ == "__main__":
    main()
