"""The tensor attack (Wang, Lee & Lei 2023) on MNIST: success by batch size and width.

Setting: a one-hidden-layer ReLU MLP (``mlp``, ``widths=[m]``) on real MNIST t10k images;
in the attacked round the malicious server sends a random-parameter query
(:func:`fedleak.crafting.random_query.random_query_weights`, default scales, seed = trial), the client
takes one FedSGD step (lr ``--lr``) on a batch of B distinct images, and ``tensor`` (its
defaults, batch size from the update's metadata) reads the update. With ``--honest`` the
server sends the untrained model instead (PyTorch's default initialisation, seed = trial):
the attack still runs on the rank-one approximation of the output layer, for comparison.

An image counts as recovered when its MSE to the matched true image (Hungarian matching on
MSE) is below 1e-3 (DLG's criterion, PSNR 30 dB); labels are scored on matched pairs.

    python benchmarks/theory_attacks.py tensor [--data-root ../shared/data/mnist] [--batch-sizes 1,4,16]
        [--widths 1000,4000,16000] [--trials 2] [--lr 0.1] [--honest]

One JSON line per trial, then a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from fedleak.adversary.metrics import SUCCESS_MSE, score
from fedleak.attacks import ATTACKS, Budget
from fedleak.attacks.tensor import TensorConfig
from fedleak.client.training import offline_update
from fedleak.crafting.random_query import random_query_weights
from fedleak.data import ImageDataset
from fedleak.models import ModelSpec
from fedleak.models.mlp import MLPConfig

from mnist_setup import MNIST_ROOT, load_mnist, machine, mnist_spec


def attack_once(spec: ModelSpec, pool: ImageDataset, index: torch.Tensor, lr: float, seed: int,
                honest: bool) -> dict[str, Any]:
    """One query (crafted, or the honest untrained model), one FedSGD step on ``index``, the attack, scored."""
    sent = spec.build(seed=seed).state_dict() if honest else random_query_weights(spec, seed)
    update = offline_update(spec, sent, pool, [index.numpy()], lr=lr)
    started = time.perf_counter()
    recon = ATTACKS.get("tensor")(TensorConfig()).run(update, spec.with_weights(sent), Budget())
    seconds = time.perf_counter() - started
    scores = score(recon.images, pool.images[index], recon.labels, pool.labels[index])
    extras = {k: v for k, v in recon.extras.items() if k in (
        "span_gap", "tensor_gap", "decomposition_score", "gradient_loss", "rank_one_residual")}
    return {
        "query": "honest" if honest else "random", "width": spec.config.widths[0], "batch": len(index),
        "seed": seed, "recovered": int((scores.mse < SUCCESS_MSE).sum()), "psnr": float(scores.psnr.mean()),
        "min_psnr": float(scores.psnr.min()), "labels": scores.label_accuracy, "seconds": seconds, **extras,
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["query"], run["width"], run["batch"]), []).append(run)
    print("\n| query | width m | batch B | images recovered (MSE < 1e-3) | mean PSNR dB | min PSNR dB "
          "| labels right | median tensor gap | median time s | trials |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (query, width, batch), group in sorted(groups.items()):
        recovered = sum(r["recovered"] for r in group) / sum(r["batch"] for r in group)
        labels = [r["labels"] for r in group if r["labels"] is not None]
        print(f"| {query} | {width} | {batch} | {recovered:.0%} | {statistics.mean(r['psnr'] for r in group):.1f} "
              f"| {min(r['min_psnr'] for r in group):.1f} "
              f"| {f'{statistics.mean(labels):.0%}' if labels else '–'} "
              f"| {statistics.median(r['tensor_gap'] for r in group):.2f} "
              f"| {statistics.median(r['seconds'] for r in group):.1f} | {len(group)} |")


def run(args: argparse.Namespace) -> None:
    splits = load_mnist(args.data_root)
    pool = splits.train
    print(machine(), flush=True)
    runs = []
    for width in [int(w) for w in args.widths.split(",")]:
        spec = mnist_spec(splits, "mlp", MLPConfig(widths=[width]))
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(batch))
            for trial in range(args.trials):
                result = attack_once(spec, pool, order[trial * batch:(trial + 1) * batch], args.lr, trial,
                                     args.honest)
                runs.append(result)
                print(json.dumps(result), flush=True)
    print_table(runs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=MNIST_ROOT)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--widths", default="1000,4000,16000")
    parser.add_argument("--trials", type=int, default=2, help="batches per (width, batch size)")
    parser.add_argument("--lr", type=float, default=0.1, help="the client's learning rate (FedSGD)")
    parser.add_argument("--honest", action="store_true", help="send the untrained model, not a random query")
