"""A sweep's comparison as one Markdown table, for BENCHMARKS.md.

One row per arm: for each attack (in round ``--round``), success (MSE < 1e-3, mean over the
attacked updates) · mean PSNR; then the mean-image PSNR on the same images, the worst
leakage score and share of images recovered over every round and attack, the final test
accuracy and ε at the end (update / model).

    python benchmarks/sweep_table.py runs/defenses-dlg [--round 1]

Reads the stores only (``fedleak.results.compare``); prints the wall time each arm's run took.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fedleak.results.compare import compare
from fedleak.results.store import ResultStore


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or not row["ok"]:
        return "–"
    return f"{row['success_rate']:.0%} · {row['psnr']:.1f} dB"


def _epsilon(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def _seconds(run_dir: Path) -> str:
    """From the run's start to its end as stored (the arm's process start-up not included)."""
    store = ResultStore.open_existing(run_dir)
    try:
        run = store.run_row()
    finally:
        store.close()
    return "–" if run is None or run["finished"] is None else f"{run['finished'] - run['started']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--round", type=int, default=1, help="the attacked round to tabulate")
    args = parser.parse_args()
    comparison = compare([args.sweep_dir])
    attacks = sorted({r["attack"] for r in comparison.rows if r["round"] == args.round and r.get("attack")})
    print(f"paired: {comparison.paired}; baseline {comparison.baseline}; "
          f"defending at the smallest cost: {comparison.best_defending}")
    print(f"| arm | {' | '.join(attacks)} | mean-image PSNR | worst leakage | recovered | test accuracy "
          "| ε (update / model) | run s |")
    print("| --- " * (len(attacks) + 7) + "|")
    for run, summary in zip(comparison.runs, comparison.summary):
        rows = {r["attack"]: r for r in comparison.rows if r["arm"] == run.label and r["round"] == args.round}
        prior = next((r["prior_psnr"] for r in rows.values() if r.get("prior_psnr") is not None), None)
        cells = [_cell(rows.get(attack)) for attack in attacks]
        print(f"| {run.label} | {' | '.join(cells)} | {'–' if prior is None else f'{prior:.1f} dB'} | "
              f"{'–' if summary.worst_leakage is None else f'{summary.worst_leakage:.2f}'} | "
              f"{'–' if summary.recovered_rate is None else f'{summary.recovered_rate:.0%}'} | "
              f"{'–' if summary.final_accuracy is None else f'{summary.final_accuracy:.1%}'} | "
              f"{_epsilon(summary.epsilon)} / {_epsilon(summary.model_epsilon)} | {_seconds(run.path)} |")


if __name__ == "__main__":
    main()
