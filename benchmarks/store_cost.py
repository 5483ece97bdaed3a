"""What storing one round costs the server: 100 accepted updates, before and after issue 19.

Arms, each timed as the server's ``Adversary.observe_round`` would spend it (no attacks):

* ``commit-per-update``: every update's row committed on its own (the store before: a
  SQLite commit, with WAL, per update);
* ``one-transaction``: the round's rows in one transaction (the store now);
* ``one-transaction+captures``: that, plus the round's captures file with the updates
  ``capture.store`` keeps (``--kept``: the attacked ones; 100 = ``capture.store = "all"``).

    python benchmarks/store_cost.py [--updates 100] [--rounds 20] [--kept 2] [--scenario scenarios/quickstart.toml]

The model is the scenario's, on its dataset; each arm writes ``--rounds`` rounds into a
fresh run directory, and the arms alternate round by round so that disk caches and CPU
frequency affect them alike. Prints median milliseconds per round and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fedleak.core.updates import ClientUpdate, UpdateMetadata, Weights
from fedleak.data.datasets import load_dataset
from fedleak.results.captures import CaptureStore
from fedleak.results.store import ResultStore
from fedleak.scenario.loading import load_scenario


def round_updates(weights: Weights, server_round: int, count: int) -> list[ClientUpdate]:
    metadata = UpdateMetadata("fedsgd", 0.1, 1, 1, 1)
    return [ClientUpdate("bench", server_round, 1000 + i, i, weights,
                         {key: value + 0.01 * (i + 1) for key, value in weights.items()}, metadata)
            for i in range(count)]


def commit_per_update(store: ResultStore, captures: CaptureStore, updates: list[ClientUpdate], kept: int) -> None:
    for update in updates:
        store.record_update(update)


def one_transaction(store: ResultStore, captures: CaptureStore, updates: list[ClientUpdate], kept: int) -> None:
    with store.transaction():
        for update in updates:
            store.record_update(update)


def with_captures(store: ResultStore, captures: CaptureStore, updates: list[ClientUpdate], kept: int) -> None:
    with store.transaction():
        for update in updates:
            store.record_update(update)
        captures.write(updates[0].server_round, updates[:kept])


ARMS: dict[str, Callable[[ResultStore, CaptureStore, list[ClientUpdate], int], None]] = {
    "commit-per-update": commit_per_update,
    "one-transaction": one_transaction,
    "one-transaction+captures": with_captures,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--kept", type=int, default=2)
    parser.add_argument("--scenario", type=Path, default=Path("scenarios/quickstart.toml"))
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    weights = {key: value.detach().clone()
               for key, value in scenario.model_spec(load_dataset(scenario.dataset)).build(0).state_dict().items()}
    size = sum(value.numel() * value.element_size() for value in weights.values())
    print(f"{args.updates} updates per round of a {scenario.model.name} model ({size / 1e3:.1f} kB), "
          f"{args.kept} kept, {args.rounds} rounds per arm, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as root:
        stores = {arm: ResultStore(Path(root) / arm) for arm in ARMS}
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for server_round in range(1, args.rounds + 1):
            updates = round_updates(weights, server_round, args.updates)
            for arm, write in ARMS.items():
                store = stores[arm]
                started = time.perf_counter()
                write(store, CaptureStore(store.directory), updates, args.kept)
                times[arm].append(time.perf_counter() - started)
        for store in stores.values():
            store.close()
    baseline = statistics.median(times["commit-per-update"])
    for arm, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{arm:26s} {median * 1e3:8.2f} ms/round  {median / args.updates * 1e3:6.3f} ms/update  "
              f"{median / baseline:5.3f}× commit-per-update")


if __name__ == "__main__":
    main()
