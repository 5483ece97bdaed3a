"""`linear` on MNIST: R-GAP alone and with Chen & Campbell's corrections, beside the audit's risk index.

Setting (R-GAP's single-image experiment, Zhu & Blaschko 2021 §5; breaching reports
≈ 49 dB PSNR for R-GAP on its CNN6 over CIFAR-10): one FedSGD step (lr ``--lr``) on one
real MNIST t10k image, the label unknown to the attacker, PyTorch's default
initialisation, the model of trial t initialised with seed t, images drawn by a fixed
seeded permutation of the pool. Two attack variants per image: pure R-GAP
(``correction_iterations = 0``) and R-GAP with corrections (the registry defaults, plus
any ``--set``). Models (``--models``, comma-separated keys):

* ``cnn6``: R-GAP's CNN6 (``rgap_cnn`` defaults: bias-free head);
* ``cnn6-bias``: the same with a bias on the head (breaching's ``cnn6``);
* ``cnn6-deficient``: 3 first-layer channels instead of 12 — the first layer's system has
  48 + 675 rows for 784 pixels (one config change);
* ``lenet-leaky``: DLG's LeNet with LeakyReLU(0.2) instead of sigmoid.

For each model the audit (``fedleak.adversary.audit``, random probe, no client data) gives the
risk index (0 = fully recoverable). Measured, not asserted: one JSON line per trial,
then a Markdown table.

    python benchmarks/theory_attacks.py linear [--data-root ../shared/data/mnist] [--images 10]
        [--models cnn6,cnn6-bias,cnn6-deficient,lenet-leaky] [--lr 1.0] [--set correction_iterations=400]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from fedleak.adversary.audit import audit_model
from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, Budget
from fedleak.client.training import offline_update
from fedleak.data.datasets import DatasetSplits
from fedleak.models import MODELS, ModelSpec

from mnist_setup import MNIST_ROOT, load_mnist, machine, mnist_spec

MODEL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cnn6": ("rgap_cnn", {}),
    "cnn6-bias": ("rgap_cnn", {"head_bias": True}),
    "cnn6-deficient": ("rgap_cnn", {"channels": [3, 36, 36, 36, 64, 128]}),
    "lenet-leaky": ("lenet", {"activation": "leaky_relu"}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=MNIST_ROOT)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--models", default=",".join(MODEL_VARIANTS))
    parser.add_argument("--lr", type=float, default=1.0, help="the client's SGD step size")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the corrected variant (repeatable), e.g. correction_iterations=1000")


def run(args: argparse.Namespace) -> None:
    splits = load_mnist(args.data_root)
    images = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[: args.images].tolist()
    corrected = {key: json.loads(value) for key, value in (option.split("=", 1) for option in args.options)}
    print(machine(), flush=True)
    rows = []
    for variant in args.models.split(","):
        spec = _spec(variant, splits)
        started = time.perf_counter()
        risk = audit_model(spec.build(seed=0)).risk_index
        print(json.dumps({"model": variant, "risk_index": risk, "audit_seconds": time.perf_counter() - started}),
              flush=True)
        for attack, config in (("R-GAP", {"correction_iterations": 0}), ("R-GAP + corrections", corrected)):
            trials = [attack_once(spec, splits, index, seed, config, args.lr) for seed, index in enumerate(images)]
            for trial in trials:
                print(json.dumps({"model": variant, "attack": attack, **trial}), flush=True)
            rows.append((variant, risk, attack, trials))
    print_table(rows)


def _spec(variant: str, splits: DatasetSplits) -> ModelSpec:
    name, options = MODEL_VARIANTS[variant]
    return mnist_spec(splits, name, MODELS.get(name).Config(**options))


def attack_once(spec: ModelSpec, splits: DatasetSplits, index: int, seed: int, config: dict[str, Any],
                lr: float) -> dict[str, Any]:
    """One FedSGD update on pool image ``index`` from weights of ``seed``, attacked by ``linear``, scored."""
    sent = spec.build(seed=seed).state_dict()
    update = offline_update(spec, sent, splits.train, [torch.tensor([index])], lr=lr)
    started = time.perf_counter()
    recon = ATTACKS.get("linear")(ATTACKS.get("linear").Config(**config)).run(update, spec.with_weights(sent),
                                                                           Budget())
    seconds = time.perf_counter() - started
    truth = splits.train
    scores = score(recon.images, truth.images[[index]], recon.labels, truth.labels[[index]])
    return {"image": index, "seed": seed, "psnr": float(scores.psnr[0]), "ssim": float(scores.ssim[0]),
            "mse": float(scores.mse[0]), "label_ok": scores.label_accuracy == 1.0, "seconds": seconds,
            "deficient_layers": sum(layer["rank"] < layer["unknowns"] for layer in recon.extras["layers"]),
            "correction_steps": recon.extras["iterations"]}


def print_table(rows: list[tuple[str, float, str, list[dict[str, Any]]]]) -> None:
    print("\n| model | risk index | attack | images | mean PSNR dB | min PSNR dB | mean SSIM | mean MSE "
          "| labels | deficient layers | median time s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for variant, risk, attack, trials in rows:
        print(f"| {variant} | {risk:.3f} | {attack} | {len(trials)} "
              f"| {statistics.mean(t['psnr'] for t in trials):.1f} | {min(t['psnr'] for t in trials):.1f} "
              f"| {statistics.mean(t['ssim'] for t in trials):.3f} | {statistics.mean(t['mse'] for t in trials):.1e} "
              f"| {sum(t['label_ok'] for t in trials)}/{len(trials)} "
              f"| {statistics.mean(t['deficient_layers'] for t in trials):.1f} "
              f"| {statistics.median(t['seconds'] for t in trials):.1f} |")
