"""Round time of the loopback deployment vs the simulation, same scenario, same machine, one run.

The deployment is docker-compose.yml's topology as processes on 127.0.0.1
(:mod:`fedleak.deploy.local`: TLS SuperLink with SuperNode authentication, SuperNodes and
SuperExecs, ``--isolation process``); the simulation is ``fedleak run``'s (Flower's Ray engine in
one process). Both run the quickstart with the overrides below and attacks only in round 1, so
rounds 2.. are federated rounds alone. A round's time is the gap between the stored
``rounds.finished`` of consecutive rounds (training, aggregation, the server's test
evaluation); the arms alternate, ``--repeats`` times each, and the medians are compared.

    python benchmarks/deployment_rounds.py [--repeats 2] [--rounds 6] [--clients 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fedleak.deploy.local import LocalDeployment
from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


def overrides(rounds: int, clients: int) -> list[str]:
    return [f"federation.rounds={rounds}", "federation.test_samples=200", f"partition.num_clients={clients}",
            "capture.rounds=[1]", "attacks.0.iterations=20", "attacks.1.iterations=5"]


def round_times(run_dir: Path) -> list[float]:
    """Seconds of each round after the first (from the stored finish times)."""
    store = ResultStore.open_existing(run_dir)
    try:
        finished = [r["finished"] for r in store.rounds()]
    finally:
        store.close()
    return [later - earlier for earlier, later in zip(finished[1:], finished[2:])]


def simulated(work: Path, rounds: int, clients: int) -> list[float]:
    scenario = load_scenario(REPO / "scenarios" / "quickstart.toml", overrides(rounds, clients))
    return round_times(simulate(scenario, new_run_dir(work, scenario.name)))


def deployed(work: Path, rounds: int, clients: int) -> list[float]:
    out_dir = work / "runs"
    with LocalDeployment(work / "deployment", supernodes=clients, ray_head=False) as deployment:
        sets = "; ".join(overrides(rounds, clients))
        deployment.flwr(["run", ".", "fedleak-local", "--stream", "--run-config", f"set='{sets}' out-dir='{out_dir}'"],
                        timeout=1200, cwd=REPO)
    (run_dir,) = out_dir.iterdir()
    return round_times(run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"simulation": [], "deployment": []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for arm, run in (("simulation", simulated), ("deployment", deployed)):
                found = run(Path(folder) / f"{arm}-{repeat}", args.rounds, args.clients)
                times[arm].extend(found)
                print(f"{arm} #{repeat}: rounds 2..{args.rounds}: " + ", ".join(f"{t:.2f}" for t in found) + " s",
                      flush=True)
    median = {arm: statistics.median(found) for arm, found in times.items()}
    print("\n| arm | rounds measured | median s/round | min | max |\n| --- | --- | --- | --- | --- |")
    for arm, found in times.items():
        print(f"| {arm} | {len(found)} | {median[arm]:.2f} | {min(found):.2f} | {max(found):.2f} |")
    print(f"\ndeployment / simulation (median round): {median['deployment'] / median['simulation']:.2f}× "
          f"({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
