"""Inverting Gradients' CPU cost per attack: fedleak's against breaching's on identical gradients.

One FedSGD round of DLG's LeNet (PyTorch's initialisation, seed 0) on the real MNIST t10k images,
as RGB (each digit in three equal channels: breaching's TV prior takes three channels only):
client i took one step (lr 1) on images i·B … i·B+B−1, so its update is minus its gradient.
Both implementations attack the same updates with the same model object (normalisation inside it,
so breaching runs with mean 0 and std 1 and boxes its images in [0, 1] as fedleak does), the
labels given to both (breaching's ``metadata.labels``; fedleak's threat model ``known_labels``),
one restart, Adam on the signed gradient at step 0.1, the step size /10 at 3/8, 5/8 and 7/8,
cosine objective plus total variation (weight ``--tv``; the two define TV slightly differently,
the cost is the same), ``--iterations`` steps. Attacks alternate (fedleak, breaching, fedleak, …)
in one process, so drift hits both; CPU = this process's user + system seconds per attack
(``time.process_time``), wall beside it. Reported: medians and the ratio fedleak / breaching,
pair by pair, and each reconstruction's PSNR.

breaching (0.1.2, PyPI) is installed only when asked: ``--install`` runs
``pip install breaching==0.1.2 hydra-core lpips`` first (its own dependencies).

    python benchmarks/inverting_vs_breaching.py [--install] [--batch 1,4] [--iterations 200] [--repeats 3]

Measured, not asserted.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from fedleak.attacks import ATTACKS, Budget
from fedleak.client.training import offline_update
from fedleak.core.image_similarity import psnr
from fedleak.core.updates import ClientUpdate
from fedleak.models import ModelSpec

from mnist_setup import lenet_on_mnist, machine, mnist_parser


def install() -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "breaching==0.1.2", "hydra-core", "lpips"],
                   check=True)


def updates(spec: ModelSpec, images: torch.Tensor, labels: torch.Tensor, batch: int,
            count: int) -> list[tuple[ClientUpdate, torch.Tensor, torch.Tensor]]:
    from fedleak.data import ImageDataset

    sent = spec.build(seed=0).state_dict()
    pool = ImageDataset(images, labels)
    found = []
    for client in range(count):
        index = torch.arange(client * batch, (client + 1) * batch)
        update = offline_update(spec, sent, pool, [index], lr=1.0, partition_id=client)
        found.append((update, images[index], labels[index]))
    return found


def fedleak_attack(spec: ModelSpec, iterations: int, tv: float) -> Callable[[ClientUpdate, torch.Tensor],
                                                                                torch.Tensor]:
    attack = ATTACKS.get("inverting")(ATTACKS.get("inverting").Config(iterations=iterations, tv_weight=tv,
                                                                        device="cpu"))

    def run(update: ClientUpdate, labels: torch.Tensor) -> torch.Tensor:
        model = spec.with_weights(update.global_weights)
        known = dataclasses.replace(update, known_labels=labels)
        return attack.run(known, model, Budget()).images

    return run


def breaching_attack(spec: ModelSpec, iterations: int, tv: float) -> Callable[[ClientUpdate, torch.Tensor],
                                                                                 torch.Tensor]:
    import breaching
    from omegaconf import OmegaConf

    cfg = breaching.get_config(overrides=["case=1_single_image_small", "attack=invertinggradients"])
    attack_cfg = cfg.attack
    OmegaConf.set_struct(attack_cfg, False)
    attack_cfg.optim.max_iterations = iterations
    attack_cfg.optim.callback = iterations + 1  # no progress printing inside the timed loop
    attack_cfg.regularization.total_variation.scale = tv
    attack_cfg.restarts.num_trials = 1
    channels, height, width = spec.image_shape
    metadata = OmegaConf.create({"shape": [channels, height, width], "mean": [0.0] * channels,
                                 "std": [1.0] * channels, "classes": spec.num_classes, "modality": "vision"})
    setup = {"device": torch.device("cpu"), "dtype": torch.float}

    def run(update: ClientUpdate, labels: torch.Tensor) -> torch.Tensor:
        model = spec.with_weights(update.global_weights)
        attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), attack_cfg, setup)
        names = [name for name, _ in model.body.named_parameters()]  # model.parameters()' order, state-dict keys
        gradient = [(update.global_weights[name] - update.client_weights[name]) / update.metadata.lr
                    for name in names]
        payload = [{"parameters": [p.detach() for p in model.parameters()],
                    "buffers": [b for b in model.buffers()], "metadata": metadata}]
        shared = [{"gradients": gradient, "buffers": None,
                   "metadata": {"num_data_points": len(labels), "labels": labels, "local_hyperparams": None}}]
        reconstructed, _ = attacker.reconstruct(payload, shared, {}, dryrun=False)
        return reconstructed["data"].clamp(0, 1)

    return run


def timed(run: Callable[[ClientUpdate, torch.Tensor], torch.Tensor], update: ClientUpdate,
          images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    recon = run(update, labels)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    order = torch.cdist(images.flatten(1), recon.flatten(1)).argmin(dim=1)  # nearest reconstruction per image
    return {"cpu": cpu, "wall": wall, "psnr": float(psnr(recon[order], images).mean())}


def main() -> None:
    parser = mnist_parser(__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="pip install breaching and its dependencies first")
    parser.add_argument("--batch", default="1,4")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="attacks of each kind per batch size")
    parser.add_argument("--tv", type=float, default=1e-4)
    args = parser.parse_args()
    if args.install:
        install()
    print(machine(), flush=True)
    splits, gray = lenet_on_mnist(args.data_root, "default")
    spec = dataclasses.replace(gray, image_shape=(3, *gray.image_shape[1:]), mean=gray.mean * 3, std=gray.std * 3)
    images = splits.test.images.expand(-1, 3, -1, -1).contiguous()
    print("| batch | fedleak CPU s | breaching CPU s | CPU ratio (pairs) | fedleak wall s | breaching wall s "
          "| PSNR dB fedleak / breaching |")
    print("|---|---|---|---|---|---|---|")
    for batch in (int(b) for b in args.batch.split(",")):
        cases = updates(spec, images, splits.test.labels, batch, args.repeats)
        ours, theirs = fedleak_attack(spec, args.iterations, args.tv), breaching_attack(spec, args.iterations, args.tv)
        rows: dict[str, list[dict[str, float]]] = {"fedleak": [], "breaching": []}
        for update, truth, labels in cases:
            rows["fedleak"].append(timed(ours, update, truth, labels))
            rows["breaching"].append(timed(theirs, update, truth, labels))
        med = lambda who, key, found=rows: statistics.median(r[key] for r in found[who])  # noqa: E731
        ratios = [a["cpu"] / b["cpu"] for a, b in zip(rows["fedleak"], rows["breaching"], strict=True)]
        print(f"| {batch} | {med('fedleak', 'cpu'):.2f} | {med('breaching', 'cpu'):.2f} "
              f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) "
              f"| {med('fedleak', 'wall'):.2f} | {med('breaching', 'wall'):.2f} "
              f"| {med('fedleak', 'psnr'):.1f} / {med('breaching', 'psnr'):.1f} |", flush=True)


if __name__ == "__main__":
    main()
