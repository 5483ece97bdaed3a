"""KKT reconstruction from a trained binary MLP on MNIST odd/even (Haim et al. 2022, §5).

Setting (Haim et al.'s MNIST experiment, their published command lines): n MNIST images
(default 500, balanced odd/even, the first of each parity in the t10k pool fedleak uses),
reduced by their per-pixel mean; a bias-free MLP D-1000-1000-1 with ReLU, its first layer
initialised ~ N(0, 10⁻⁸) (the others PyTorch's default); full-batch gradient descent on the
logistic loss in float64 (their lr 0.01 for up to 10⁶ epochs; ``--train-lr`` /
``--train-epochs`` trade that for CPU time). The ``kkt`` attack then reads the trained
weights as a client update with its registry defaults (Haim et al.'s run ``kcf9bhbi``:
2n candidates, 50,000 SGD steps) unless ``--set`` changes them.

Scores: the paper's (each training image's nearest reconstruction by normalised
cross-correlation, SSIM over an 11×11 Gaussian window, σ 1.5; the count above 0.4), *exact* recoveries
(training images that are the nearest pool image to some reconstruction at SSIM > 0.6),
and fedleak's Hungarian matching (SSIM mean and count above 0.4).

    python benchmarks/theory_attacks.py kkt [--n 500] [--widths 1000,1000] [--train-epochs 2000]
        [--train-lr 0.01] [--iterations 50000] [--time-budget 1200] [--set lambda_lr=0.01] [--jsonl out.jsonl]
        [--device auto]

``--device``: where the MLP trains and the attack runs (the attack's ``device`` option).

Measured, not asserted: one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, Budget
from fedleak.attacks.kkt import exact_recoveries, nearest_reconstruction_ssim
from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.data import ImageDataset
from fedleak.models import ImageClassifier
from fedleak.models.mlp import MLP, MLPConfig

from mnist_setup import MNIST_ROOT, append_jsonl, load_mnist


def odd_even(pool: ImageDataset, n: int) -> torch.Tensor:
    """Pool indices of the first n/2 even and the first n/2 odd digits."""
    parity = pool.labels % 2
    return torch.cat([torch.nonzero(parity == p)[: n // 2, 0] for p in (0, 1)])


def haim_mlp(images: torch.Tensor, widths: list[int], first_layer_std: float, seed: int) -> ImageClassifier:
    """Bias-free MLP with one logit, inputs reduced by the training images' per-pixel mean."""
    torch.manual_seed(seed)
    shape = tuple(images.shape[1:])
    mean = images.mean(dim=0).flatten().tolist()  # Haim et al.'s data_reduce_mean
    model = ImageClassifier(MLP(MLPConfig(widths=widths, bias=False), shape, 1), shape, 1, mean, [1.0])
    with torch.no_grad():
        model.body.layers[1].weight.normal_(0, first_layer_std)
    return model


def train_to_zero_loss(model: ImageClassifier, images: torch.Tensor, parity: torch.Tensor, lr: float,
                       epochs: int, threshold: float, device: torch.device) -> dict[str, Any]:
    """Full-batch GD on the logistic loss in float64 on ``device`` until ``epochs`` or loss < ``threshold``;
    ``model`` ends on the CPU in float32, trained."""
    network = model.to(device, torch.float64)
    inputs, targets = images.to(device, torch.float64), parity.to(device, torch.float64)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr)
    started, epoch, loss = time.perf_counter(), 0, torch.tensor(float("inf"))
    torch.set_flush_denormal(True)  # subnormal floats appear late in training and slow the CPU several-fold
    while epoch < epochs and loss.item() >= threshold:
        loss = F.binary_cross_entropy_with_logits(network(inputs)[:, 0], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        epoch += 1
    torch.set_flush_denormal(False)
    with torch.no_grad():
        logits = network(inputs)[:, 0]
        final = F.binary_cross_entropy_with_logits(logits, targets).item()
        accuracy = ((logits > 0).double() == targets).double().mean().item()
    seconds = time.perf_counter() - started
    network.to("cpu", torch.float32)
    return {"train_epochs": epoch, "train_loss": final, "train_accuracy": accuracy, "train_seconds": round(seconds, 1),
            "train_epochs_per_s": round(epoch / seconds, 2)}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    pool = load_mnist(args.data_root).train
    index = odd_even(pool, args.n)
    images, parity = pool.images[index], pool.labels[index] % 2
    model = haim_mlp(images, args.widths, args.init, args.seed)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    config = {"iterations": args.iterations, "device": args.device, **dict(_parse(item) for item in args.set)}
    kkt = ATTACKS.get("kkt").Config(**config)
    training = train_to_zero_loss(model, images, parity, args.train_lr, args.train_epochs, args.train_threshold,
                                  kkt.torch_device())
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(sent)
    metadata = UpdateMetadata("fedavg", args.train_lr, training["train_epochs"], args.n, args.n)
    update = ClientUpdate("theory_kkt", 1, 0, 0, sent, trained, metadata)
    attack = ATTACKS.get("kkt")(kkt)
    recon = attack.run(update, model, Budget(args.time_budget))
    paper = nearest_reconstruction_ssim(recon.images, images)
    matched = score(recon.images, images)
    result = {
        "part": "kkt", "device": str(kkt.torch_device()),
        "n": args.n, "widths": args.widths, "init": args.init, "train_lr": args.train_lr, **training,
        "attack_config": config, "attack_seconds": round(recon.seconds, 1),
        "attack_iterations_per_s": round(recon.extras["iterations"] / recon.seconds, 2),
        "paper_ssim_over_0.4": int((paper > 0.4).sum()), "paper_ssim_mean": round(float(paper.mean()), 3),
        "exact_recoveries": exact_recoveries(recon.images, pool.images, index),
        "hungarian_ssim_mean": round(float(matched.ssim.mean()), 3),
        "hungarian_ssim_over_0.4": int((matched.ssim > 0.4).sum()),
        "extras": recon.extras, "threads": args.threads, "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result), flush=True)
    append_jsonl(args.jsonl, result)


def _parse(item: str) -> tuple[str, Any]:
    key, value = item.split("=", 1)
    return key, json.loads(value) if value[:1].isdigit() or value[:1] in "-[{tf" else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=MNIST_ROOT)
    parser.add_argument("--n", type=int, default=500, help="training images (balanced odd/even)")
    parser.add_argument("--widths", type=lambda s: [int(w) for w in s.split(",")], default=[1000, 1000])
    parser.add_argument("--init", type=float, default=1e-4, help="std of the first layer's initial weights")
    parser.add_argument("--train-lr", type=float, default=0.01)
    parser.add_argument("--train-epochs", type=int, default=1_000_000)
    parser.add_argument("--train-threshold", type=float, default=1e-40, help="stop training below this loss")
    parser.add_argument("--iterations", type=int, default=50_000)
    parser.add_argument("--time-budget", type=float, default=None, help="attack seconds")
    parser.add_argument("--set", action="append", default=[], help="kkt config key=value (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jsonl", type=Path, default=None)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
