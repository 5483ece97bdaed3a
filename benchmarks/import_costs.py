"""What starting fedleak costs: wall time of CLI commands and the modules an attack worker imports.

Compares this checkout with a baseline checkout of an earlier commit (``git worktree add
/tmp/baseline REV``), run alternately so that drift in the machine's speed hits both:

    python benchmarks/import_costs.py --baseline /tmp/baseline --runs 7

The baseline's worker module is given with ``--baseline-worker`` when it lived elsewhere
(before the layout change: ``fedleak.runner.ray_pool``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
COMMANDS = {"fedleak --help": ["--help"], "fedleak audit lenet": ["audit", "lenet"]}
_COUNT = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
import fedleak
fedleak.ATTACKS.names()
ours = [m for m in sys.modules if m == "fedleak" or m.startswith("fedleak.")]
print(json.dumps({"modules": len(sys.modules), "fedleak": len(ours),
                  "flwr": sum(m.split(".")[0] == "flwr" for m in sys.modules)}))
"""


def _env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout)}


def _wall(checkout: Path, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fedleak.cli", *args], env=_env(checkout), cwd=checkout,
                   capture_output=True, check=True)
    return time.perf_counter() - start


def _worker_modules(checkout: Path, module: str) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _COUNT, module], env=_env(checkout), cwd=checkout,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the earlier commit")
    parser.add_argument("--baseline-worker", default="fedleak.runner.ray_pool")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    for name, argv in COMMANDS.items():
        _wall(HERE, argv), _wall(args.baseline, argv)  # warm the file cache
        pairs = [(_wall(args.baseline, argv), _wall(HERE, argv)) for _ in range(args.runs)]
        before = statistics.median(b for b, _ in pairs)
        after = statistics.median(a for _, a in pairs)
        ratio = statistics.median(a / b for b, a in pairs)
        print(f"{name}: baseline {before:.2f} s, now {after:.2f} s (medians of {args.runs}); "
              f"now/baseline {ratio:.2f} (median of pair ratios)")
    before = _worker_modules(args.baseline, args.baseline_worker)
    after = _worker_modules(HERE, "fedleak.runners._ray_pool")
    print(f"attack worker start-up: baseline {before}, now {after}; "
          f"modules now/baseline {after['modules'] / before['modules']:.3f}")


if __name__ == "__main__":
    main()
