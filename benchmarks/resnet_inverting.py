"""Inverting Gradients against torchvision's ResNet-18 (small-input stem) on 3×32×32 colour crops.

Geiping et al.'s (NeurIPS 2020) CIFAR-10 ResNet setting, sized for a CPU: the untrained
network (seeded initialisation) with the CIFAR stem (``torchvision:resnet18``,
``small_input``: 3×3 stride-1 conv1, no max-pool), one FedSGD step of the client in
train mode (BatchNorm on the batch's statistics), then fedleak's ``inverting`` attack
(cosine distance + TV, signed Adam, step size ÷10 at 3/8, 5/8, 7/8) with the true labels
known, as the reference code's reconstruction is given them. No committed data: the
images are random 32×32 crops of the two colour photos scikit-learn ships
(``load_sample_images``), each photo first shrunk 4× so that a crop holds a scene's
worth of content. Scores after one-to-one matching: PSNR and SSIM, beside those of the
mean image of 256 other crops (the guess of an attacker who knows only the data's average).
Measured, not asserted.

``--one-model``: every attack against the same model (seed 0), all solved as one stacked
optimisation through the runner's ``execute_batch``, as fedleak attacks one round's clients
(on a GPU, that is how two 24,000-step attacks fit the time of one). ``--time-budget``: each
attack (or the stacked batch) stops there and reports the iterations it reached.

    python benchmarks/resnet_inverting.py [--iterations 400] [--images 3] [--batches 2] [--batch-size 4]
        [--device auto] [--one-model] [--time-budget SECONDS] [--jsonl out.jsonl]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fedleak.adversary.metrics import prior_reference, score
from fedleak.attacks import ATTACKS
from fedleak.client.training import offline_update
from fedleak.core.updates import ClientUpdate
from fedleak.data import ImageDataset
from fedleak.models import MODELS, ModelSpec
from fedleak.runners import AttackJob, execute_batch

from mnist_setup import append_jsonl, machine

MODEL = "torchvision:resnet18"
SHRINK = 4
"""The photos (427×640) are shrunk by this factor before cropping."""


def colour_crops(count: int, seed: int) -> ImageDataset:
    """``count`` random 32×32 crops of scikit-learn's sample photos, in [0, 1], with labels 0, 1, …, 9, 0, …"""
    from sklearn.datasets import load_sample_images  # scikit-learn only here

    photos = [torch.tensor(p).permute(2, 0, 1)[None].float() / 255 for p in load_sample_images().images]
    small = [F.interpolate(p, scale_factor=1 / SHRINK, mode="bilinear", antialias=True)[0] for p in photos]
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for index in range(count):
        photo = small[index % len(small)]
        top = int(torch.randint(photo.shape[1] - 32 + 1, (), generator=generator))
        left = int(torch.randint(photo.shape[2] - 32 + 1, (), generator=generator))
        crops.append(photo[:, top:top + 32, left:left + 32])
    return ImageDataset(torch.stack(crops).clamp(0, 1), torch.arange(count) % 10)


def resnet_spec(pool: ImageDataset) -> ModelSpec:
    """ResNet-18 with the small-input stem, normalised with the crops' channel statistics."""
    config = MODELS.get(MODEL).Config.model_validate({"small_input": True})
    mean, std = pool.images.mean(dim=(0, 2, 3)), pool.images.std(dim=(0, 2, 3))
    return ModelSpec(MODEL, config, pool.image_shape, 10, tuple(mean.tolist()), tuple(std.tolist()))


def fedsgd_update(spec: ModelSpec, pool: ImageDataset, batch: list[int], seed: int) -> ClientUpdate:
    """One FedSGD step (lr 0.1) of ``batch`` at the weights seeded ``seed``, the labels known."""
    index = np.asarray(batch)
    update = offline_update(spec, spec.build(seed=seed).state_dict(), pool, [index], lr=0.1)
    return dataclasses.replace(update, known_labels=pool.labels[index])


def attack(spec: ModelSpec, pool: ImageDataset, prior: torch.Tensor, batches: list[list[int]], seed: int,
           config: dict[str, Any]) -> list[dict[str, Any]]:
    """``batches`` (one client each) at the model seeded ``seed``, inverted together; each scored."""
    updates = [fedsgd_update(spec, pool, batch, seed) for batch in batches]
    inverting = ATTACKS.get("inverting").Config(seed=seed, **config)
    started = time.perf_counter()
    outcomes = execute_batch([AttackJob(update, "inverting", inverting, spec) for update in updates])
    seconds = time.perf_counter() - started
    results = []
    for batch, outcome in zip(batches, outcomes):
        if outcome.reconstruction is None:
            raise RuntimeError(f"the attack failed: {outcome.error}")
        recon, truth = outcome.reconstruction, pool.images[np.asarray(batch)]
        scores = score(recon.images, truth, recon.labels, pool.labels[np.asarray(batch)])
        mean_image = prior_reference(recon.images, truth, prior)
        results.append({
            "batch": len(batch), "psnr": float(scores.psnr.mean()), "ssim": float(scores.ssim.mean()),
            "mean_image_psnr": float(mean_image.psnr.mean()), "mean_image_ssim": float(mean_image.ssim.mean()),
            "seconds": seconds, "stacked": len(batches), "final_loss": recon.extras["final_loss"],
            "iterations": recon.extras["iterations"], "iterations_planned": recon.extras["iterations_planned"],
            "stopped_by_budget": recon.extras["stopped_by_budget"]})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--images", type=int, default=3, help="batch-1 attacks (one image each)")
    parser.add_argument("--batches", type=int, default=2, help="attacks on batches of --batch-size")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tv-weight", type=float, default=1e-4, help="1e-4: the reference code's default")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--one-model", action="store_true", help="every attack against one model, stacked")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds per attack (or stacked batch)")
    parser.add_argument("--jsonl", type=Path, help="append one JSON line per attack")
    args = parser.parse_args()
    pool = colour_crops(args.images + args.batches * args.batch_size, seed=0)
    prior = colour_crops(256, seed=1).images.mean(dim=0)
    spec = resnet_spec(pool)
    size = args.batch_size
    config = {"iterations": args.iterations, "tv_weight": args.tv_weight, "device": args.device,
              "time_budget_s": args.time_budget}
    groups = {"batch 1": [[i] for i in range(args.images)],
              f"batch {size}": [list(range(args.images + size * b, args.images + size * (b + 1)))
                                for b in range(args.batches)]}
    print(machine(), f"cuda: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}", flush=True)
    print(f"{MODEL} (small_input), untrained, FedSGD lr 0.1, labels known; inverting: {args.iterations} "
          f"iterations, tv_weight {args.tv_weight:g}, 1 restart, device {args.device}", flush=True)
    for name, batches in groups.items():
        if not batches:  # --images 0 or --batches 0
            continue
        runs = ([attack(spec, pool, prior, batches, 0, config)] if args.one_model
                else [attack(spec, pool, prior, [batch], seed, config) for seed, batch in enumerate(batches)])
        results = [result for run in runs for result in run]
        for r in results:
            print(f"{name}: PSNR {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  (mean image {r['mean_image_psnr']:.2f} dB, "
                  f"{r['mean_image_ssim']:.3f})  loss {r['final_loss']:.4f}  {r['iterations']} of "
                  f"{r['iterations_planned']} iterations  {r['seconds']:.0f} s", flush=True)
            append_jsonl(args.jsonl, {"part": "resnet_inverting", "device": args.device, **r})
        print(f"== {name}: mean PSNR {statistics.mean(r['psnr'] for r in results):.2f} dB, mean SSIM "
              f"{statistics.mean(r['ssim'] for r in results):.3f}, "
              f"{statistics.mean(r['seconds'] for r in runs[0]):.0f} s per run", flush=True)


if __name__ == "__main__":
    main()
