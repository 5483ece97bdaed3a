"""Gradient-inversion attacks on LeNet/MNIST by batch size, and Inverting Gradients on FedAvg updates.

Setting (DLG's and GRNN's LeNet/MNIST experiments): DLG's LeNet (sigmoid), its
weights either ~ U(−0.5, 0.5) as in DLG (``--init uniform``) or PyTorch's default
initialisation (``--init default``, an untrained model as FL starts from); real MNIST
t10k images (the pool fedleak trains from), one FedSGD step (lr 1) on a batch of
distinct images, the labels unknown to the attacker. Each attack runs with its
registry defaults (DLG/iDLG 300 L-BFGS steps, Inverting Gradients 4800 Adam steps,
GRNN 1000 RMSprop steps) unless ``--set`` changes one, one restart, attack seed 0;
the model of trial t is initialised with seed t.
A reconstructed image counts as recovered when its MSE to the matched true image is
below 1e-3 (DLG's criterion, PSNR 30 dB).

FedAvg: a client holding ``--fedavg-batch`` images takes 1, 2 or 5 full-batch SGD steps
(lr ``--fedavg-lr``); Inverting Gradients attacks the update by unrolling the local
steps and, for comparison, by treating it as one pseudo-gradient.

    python benchmarks/attacks_mnist.py [--data-root ../shared/data/mnist] [--attacks dlg,grnn]
        [--batch-sizes 1,4,8] [--trials 3] [--fedavg-steps 1,2,5] [--time-budget 600] [--jsonl out.jsonl]
        [--init default] [--set labels=infer] [--known-labels]
    python benchmarks/attacks_mnist.py --report out.jsonl more.jsonl   # tables only

Measured, not asserted: one line per attack as it finishes, then Markdown tables.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from fedleak.adversary.metrics import SUCCESS_MSE, score
from fedleak.attacks import ATTACKS
from fedleak.client.training import offline_update
from fedleak.data import ImageDataset
from fedleak.models import ModelSpec
from fedleak.runners import AttackJob, execute

from mnist_setup import append_jsonl, lenet_on_mnist, machine, mnist_parser

BATCH_SIZES = (1, 4, 8, 16, 32, 64)
ATTACK_NAMES = ("dlg", "idlg", "inverting", "grnn")


def attack_once(
    spec: ModelSpec, pool: ImageDataset, index: torch.Tensor, attack: str, config: dict[str, Any],
    steps: int, lr: float, seed: int, budget: float | None, known_labels: bool = False,
) -> dict[str, Any]:
    """One client update (``steps`` full-batch SGD steps on ``index``), one attack, scored."""
    sent = spec.build(seed=seed).state_dict()
    update = offline_update(spec, sent, pool, [index] * steps, lr=lr)
    if known_labels:  # the threat model's capability flag, as the adversary grants it
        update = dataclasses.replace(update, known_labels=pool.labels[index])
    started = time.perf_counter()  # through the runner's path: its float32 arithmetic on a GPU
    outcome = execute(AttackJob(update, attack, ATTACKS.get(attack).Config(**config, time_budget_s=budget), spec))
    seconds = time.perf_counter() - started
    if outcome.reconstruction is None:
        raise RuntimeError(f"{attack} failed: {outcome.error}")
    recon = outcome.reconstruction
    scores = score(recon.images, pool.images[index], recon.labels, pool.labels[index])
    return {
        "attack": attack, "config": config, "known_labels": known_labels, "batch": len(index), "steps": steps,
        "seed": seed,
        "recovered": int((scores.mse < SUCCESS_MSE).sum()), "psnr": float(scores.psnr.mean()),
        "ssim": float(scores.ssim.mean()), "label_counts": scores.label_count_accuracy,
        "iterations": recon.extras["iterations"], "stopped_by_budget": recon.extras["stopped_by_budget"],
        "seconds": seconds,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    images = sum(r["batch"] for r in runs)
    return {
        "success": sum(r["recovered"] for r in runs) / images,
        "psnr": statistics.mean(r["psnr"] for r in runs), "ssim": statistics.mean(r["ssim"] for r in runs),
        "labels": statistics.mean(r["label_counts"] for r in runs),
        "seconds": statistics.median(r["seconds"] for r in runs),
        "budget_hits": sum(r["stopped_by_budget"] for r in runs), "images": images, "trials": len(runs),
    }


def batches(pool: ImageDataset, size: int, trials: int, offset: int) -> list[torch.Tensor]:
    """``trials`` disjoint batches of distinct pool images (a fixed, seeded draw)."""
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(offset))
    return [order[t * size : (t + 1) * size] for t in range(trials)]


def print_tables(runs: list[dict[str, Any]]) -> None:
    """Markdown tables: by attack and batch size (FedSGD), then Inverting Gradients on FedAvg updates."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        options = ", ".join([f"{k}={v}" for k, v in sorted(run["config"].items()) if k != "fedavg"]
                            + (["known labels"] if run.get("known_labels") else []))
        attack = f"{run['attack']} ({options})" if options else run["attack"]
        key = (run["init"], "fedavg" in run["config"], attack, run["config"].get("fedavg", ""), run["steps"],
               run["batch"])
        groups.setdefault(key, []).append(run)
    print("\n| LeNet init | attack | FedAvg model | local steps | batch | images recovered (MSE < 1e-3) "
          "| mean PSNR dB | mean SSIM | label counts | median iterations | median time s | budget hits | trials |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (init, _, attack, mode, steps, batch), group in sorted(groups.items()):
        s = summarise(group)
        iterations = statistics.median(r["iterations"] for r in group)  # done, of the attack's budget
        print(f"| {init} | {attack} | {mode or '–'} | {steps} | {batch} | {s['success']:.0%} | {s['psnr']:.1f} "
              f"| {s['ssim']:.3f} | {s['labels']:.0%} | {iterations:g} | {s['seconds']:.0f} | {s['budget_hits']} "
              f"| {s['trials']} |")


def main() -> None:
    parser = mnist_parser(__doc__)
    parser.add_argument("--init", choices=["uniform", "default"], default="uniform",
                        help="LeNet weights: U(-0.5, 0.5) as in DLG, or PyTorch's default")
    parser.add_argument("--attacks", default=",".join(ATTACK_NAMES))
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="empty: skip")
    parser.add_argument("--trials", type=int, default=3, help="batches per (attack, batch size)")
    parser.add_argument("--fedavg-steps", default="1,2,5", help="empty: skip the FedAvg study")
    parser.add_argument("--fedavg-batch", type=int, default=4)
    parser.add_argument("--fedavg-lr", type=float, default=0.1)
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="an attack option for every attack of this run (repeatable), e.g. labels=infer")
    parser.add_argument("--known-labels", action="store_true", help="grant the attacks the true labels")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per attack (default: none)")
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per attack")
    parser.add_argument("--report", type=Path, nargs="*", help="only print the tables of these JSONL files")
    args = parser.parse_args()
    if args.report:
        print_tables([json.loads(line) for path in args.report for line in path.read_text().splitlines()])
        return

    splits, spec = lenet_on_mnist(args.data_root, args.init)
    pool = splits.train
    print(machine(), flush=True)
    runs: list[dict[str, Any]] = []
    options = dict(option.split("=", 1) for option in args.options)

    def record(run: dict[str, Any]) -> None:
        run["init"] = args.init
        runs.append(run)
        print(json.dumps(run), flush=True)
        append_jsonl(args.jsonl, run)

    for size in [int(b) for b in args.batch_sizes.split(",") if b]:
        for trial, index in enumerate(batches(pool, size, args.trials, offset=size)):
            for attack in args.attacks.split(","):
                record(attack_once(spec, pool, index, attack, options, 1, 1.0, trial, args.time_budget,
                                   args.known_labels))
    for steps in [int(s) for s in args.fedavg_steps.split(",") if s]:
        for trial, index in enumerate(batches(pool, args.fedavg_batch, args.trials, offset=1000 + steps)):
            for mode in ("unroll", "pseudo-gradient"):
                record(attack_once(spec, pool, index, "inverting", {**options, "fedavg": mode}, steps,
                                   args.fedavg_lr, trial, args.time_budget, args.known_labels))
    print_tables(runs)


if __name__ == "__main__":
    main()
