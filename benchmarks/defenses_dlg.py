"""The DLG paper's defense study (Zhu et al. 2019, §5 / Fig. 8), run through fedleak's
real federation: Flower clients apply each defense, the adversarial server attacks what
it received with DLG and iDLG.

Leakage: LeNet (sigmoid, weights ~ U(−0.5, 0.5)), real MNIST t10k images, FedSGD with
batch 1 and lr 1 (so the update is minus the gradient, as in the paper), one image per
client, 300 L-BFGS iterations. Success = MSE < 1e-3. Noise "variance v" is added to
the gradient, as in the paper.

Utility: the global model's test accuracy after a short FedAvg run with the same
defense (8 clients, 10 rounds of 10 local SGD steps, batch 32, lr 0.1, 1,000 test
images). The sigmoid LeNet above does not train in 100 plain SGD steps (10% accuracy
without any defense), so this run uses the same LeNet with ReLU and default init.
Noise is scaled to equal variance v on each local gradient: std(Δ) = lr·√steps·√v.

    python benchmarks/defenses_dlg.py [--data-root ../shared/data/mnist] [--clients 4] [--only gaussian]

Measured, not asserted; prints one Markdown row per configuration as it finishes. The
study now runs as one sweep (``fedleak sweep scenarios/sweeps/defenses_dlg.toml``: every
arm on the same clients and batches, leakage and utility in one federation, ε and the
mean-image reference stored); this script is kept as the reference its wall time is
measured against in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.scenario import Scenario, parse_scenario

from mnist_setup import machine, mnist_parser

Defenses = Callable[[float], list[dict[str, Any]]]
"""The defense list, given the factor that turns gradient noise std into update noise std."""

UTILITY = {"clients": 8, "rounds": 10, "local_steps": 10, "batch_size": 32, "lr": 0.1}


@dataclass(frozen=True)
class Configuration:
    label: str
    defenses: Defenses
    clients: int | None = None
    """Clients in the leakage run (``None``: ``--clients``); SecAgg+ varies it."""


def _noise(mechanism: str, variance: float) -> Defenses:
    return lambda scale: [{"name": "local-dp", "mechanism": mechanism, "std": scale * math.sqrt(variance)}]


def configurations() -> list[Configuration]:
    fixed = lambda *defenses: (lambda scale: list(defenses))  # noqa: E731
    configs = [Configuration("none", fixed())]
    configs += [Configuration(name, fixed({"name": name})) for name in ("fp16", "bf16", "int8")]
    for mechanism in ("gaussian", "laplace"):
        configs += [Configuration(f"{mechanism} var {v:g}", _noise(mechanism, v)) for v in (1e-4, 1e-3, 1e-2, 1e-1)]
    configs += [Configuration(f"prune {p:.0%}", fixed({"name": "prune", "fraction": p}))
                for p in (0.1, 0.2, 0.3, 0.5, 0.7)]
    configs += [Configuration(f"top-k keep {k:.0%}", fixed({"name": "top-k", "keep": k})) for k in (0.3, 0.1)]
    configs += [Configuration(f"secagg+ {n} clients", fixed({"name": "secagg-plus"}), clients=n) for n in (2, 8)]
    return configs


def leakage_scenario(config: Configuration, data_root: Path, clients: int, attacked: int, iterations: int) -> Scenario:
    return parse_scenario({
        "name": "defenses-dlg", "dataset": {"name": "mnist", "data_root": str(data_root)},
        "partition": {"num_clients": clients},
        "model": {"name": "lenet", "init": "uniform", "init_bound": 0.5},
        "training": {"algorithm": "fedsgd", "lr": 1.0, "batch_size": 1},
        "federation": {"rounds": 1, "test_samples": 10},
        "capture": {"rounds": [1], "clients": list(range(attacked))},
        "attacks": [{"name": "dlg", "iterations": iterations}, {"name": "idlg", "iterations": iterations}],
        "defenses": config.defenses(1.0), "save_images": False,
    })


def utility_scenario(config: Configuration, data_root: Path) -> Scenario:
    u = UTILITY
    return parse_scenario({
        "name": "defenses-utility", "dataset": {"name": "mnist", "data_root": str(data_root)},
        "partition": {"num_clients": u["clients"]}, "model": {"name": "lenet", "activation": "relu"},
        "training": {"algorithm": "fedavg", "lr": u["lr"], "batch_size": u["batch_size"],
                     "local_steps": u["local_steps"]},
        "federation": {"rounds": u["rounds"], "test_samples": 1000},
        "defenses": config.defenses(u["lr"] * math.sqrt(u["local_steps"])),
    })


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if r["status"] == "ok"]
    return {
        "attacked": len(rows), "ok": len(ok),
        "success": sum(r["success_rate"] for r in ok) / len(rows) if rows else None,
        "psnr": sum(r["psnr"] for r in ok) / len(ok) if ok else None,
        "errors": sorted({r["error"][:80] for r in rows if r["status"] != "ok"}),
    }


def measure(config: Configuration, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    clients = config.clients or args.clients
    started = time.perf_counter()
    scenario = leakage_scenario(config, args.data_root, clients, min(clients, args.clients), args.iterations)
    store = ResultStore.open_existing(simulate(scenario, new_run_dir(out, scenario.name)))
    result: dict[str, Any] = {"label": config.label, "clients": clients}
    for attack in ("dlg", "idlg"):
        rows = store.attack_results(attack)
        result[attack] = summarise([r for r in rows if r["partition_id"] >= 0])
        result[f"{attack} aggregate"] = summarise([r for r in rows if r["partition_id"] < 0])
    result["leakage seconds"] = time.perf_counter() - started
    if not args.skip_utility:
        scenario = utility_scenario(config, args.data_root)
        store = ResultStore.open_existing(simulate(scenario, new_run_dir(out, scenario.name)))
        result["accuracy"] = store.rounds()[-1]["test_accuracy"]
    return result


def row(result: dict[str, Any]) -> str:
    def cell(summary: dict[str, Any]) -> str:
        if not summary["attacked"]:
            return "–"
        if summary["psnr"] is None:
            return f"n/a ({summary['errors'][0][:40]})"
        return f"{summary['success']:.0%} · {summary['psnr']:.1f} dB"

    aggregate = result["dlg aggregate"]
    accuracy = f"{result['accuracy']:.1%}" if "accuracy" in result else "–"
    return (f"| {result['label']} | {cell(result['dlg'])} | {cell(result['idlg'])} | "
            f"{cell(aggregate)} | {accuracy} |")


def main() -> None:
    parser = mnist_parser(__doc__)
    parser.add_argument("--clients", type=int, default=4, help="clients (= images) attacked per configuration")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--only", default="", help="run only configurations whose label contains this")
    parser.add_argument("--skip-utility", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.data_root = args.data_root.resolve()
    print(f"{machine()}; {args.clients} images per configuration, {args.iterations} iterations")
    print("| defense | DLG success · PSNR | iDLG success · PSNR | DLG on SecAgg+ aggregate | test accuracy |")
    print("| --- | --- | --- | --- | --- |")
    results = []
    with tempfile.TemporaryDirectory() as out:
        for config in configurations():
            if args.only in config.label:
                results.append(measure(config, args, Path(out)))
                print(row(results[-1]), flush=True)
                if args.json:
                    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
