"""Where the simulation stops being practical on this machine: round time against the number of clients.

Each configuration is one ``fedleak run`` of the quickstart's federation (digits, LeNet, FedSGD
batch 1, IID) with the server capturing and storing every reply but no attack (``attacks = []``),
``--rounds`` rounds, in a fresh process. Round time = the time between the progress lines of
consecutive rounds (``global model after round r``), rounds ≥ 2 (round 1 includes starting the
client actors); wall and CPU of the whole process beside it (:mod:`process_timing`). Full
participation (every client each round) and partial (``fraction_train``: Flower samples that
share of all clients, which all stay registered as SuperNodes).

    python benchmarks/scale.py [--configs 10:1,50:1,100:1,200:1,1000:0.1] [--rounds 4] [--set KEY=VALUE ...]

``N:f`` is N clients with ``fraction_train`` f; ``--set`` changes the scenario further (e.g. MNIST's
10,000 images for more clients than the digits' 1,500). Measured, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from process_timing import timed

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")


def command(clients: int, fraction: float, rounds: int, out: str, extra: list[str]) -> list[str]:
    sets = {"partition.num_clients": clients, "federation.fraction_train": fraction, "federation.rounds": rounds,
            "federation.test_samples": 100, "attacks": "[]", "capture.store": "none"}
    return [sys.executable, "-m", "fedleak", "run", QUICKSTART, "--out", out,
            *[part for key, value in sets.items() for part in ("--set", f"{key}={value}")],
            *[part for override in extra for part in ("--set", override)]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="10:1,50:1,100:1,200:1,1000:0.1")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="another scenario override")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}", flush=True)
    print("| clients | fraction_train | clients per round | round s (rounds ≥ 2, median) | ms per sampled client "
          "| run wall s | run CPU s | status |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        for config in args.configs.split(","):
            clients, fraction = int(config.split(":")[0]), float(config.split(":")[1])
            per_round = max(1, int(clients * fraction))
            try:
                run = timed(command(clients, fraction, args.rounds, out, args.extra), cwd=str(ROOT),
                            timeout_s=args.timeout)
            except TimeoutError:
                print(f"| {clients} | {fraction} | {per_round} | – | – | > {args.timeout:.0f} | – | timed out |",
                      flush=True)
                continue
            ends = [run.first(f"global model after round {r}:") for r in range(1, args.rounds + 1)]
            rounds = [b - a for a, b in zip(ends, ends[1:]) if a is not None and b is not None]  # rounds 2…R
            median = statistics.median(rounds) if rounds else float("nan")
            status = "finished" if run.first("status: finished") is not None else f"exit {run.returncode}"
            print(f"| {clients} | {fraction} | {per_round} | {median:.2f} | {1000 * median / per_round:.1f} "
                  f"| {run.wall_s:.1f} | {run.cpu_s:.1f} | {status} |", flush=True)


if __name__ == "__main__":
    main()
