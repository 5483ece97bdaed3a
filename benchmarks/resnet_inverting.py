"""Inverting Gradients against torchvision's ResNet-18 (small-input stem) on 3×32×32 colour crops.

Geiping et al.'s (NeurIPS 2020) CIFAR-10 ResNet setting, sized for a CPU: the untrained
network (seeded initialisation) with the CIFAR stem (``torchvision:resnet18``,
``small_input``: 3×3 stride-1 conv1, no max-pool), one FedSGD step of the client in
train mode (BatchNorm on the batch's statistics), then fedleak's ``inverting`` attack
(cosine distance + TV, signed Adam, step size ÷10 at 3/8, 5/8, 7/8) with the true labels
known, as the reference code's reconstruction is given them. No committed data: the
images are random 32×32 crops of the two colour photos scikit-learn ships
(``load_sample_images``), each photo first shrunk 4× so that a crop holds a scene's
worth of content. Scores after one-to-one matching: PSNR and SSIM. Measured, not asserted.

    python benchmarks/resnet_inverting.py [--iterations 400] [--images 3] [--batches 2] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS, Budget
from fedleak.client.training import offline_update
from fedleak.data import ImageDataset
from fedleak.models import MODELS, ModelSpec

from mnist_setup import machine

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


def attack(spec: ModelSpec, pool: ImageDataset, batch: list[int], iterations: int, tv_weight: float,
           seed: int) -> dict[str, float]:
    """One FedSGD update of ``batch`` at freshly seeded weights, inverted; mean scores over the batch."""
    sent = spec.build(seed=seed).state_dict()
    index = np.asarray(batch)
    update = offline_update(spec, sent, pool, [index], lr=0.1)
    update = dataclasses.replace(update, known_labels=pool.labels[index])
    config = ATTACKS.get("inverting").Config(iterations=iterations, tv_weight=tv_weight, seed=seed)
    started = time.perf_counter()
    recon = ATTACKS.get("inverting")(config).run(update, spec.with_weights(sent), Budget())
    seconds = time.perf_counter() - started
    scores = score(recon.images, pool.images[index], recon.labels, pool.labels[index])
    return {"psnr": float(scores.psnr.mean()), "ssim": float(scores.ssim.mean()), "seconds": seconds,
            "final_loss": recon.extras["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--images", type=int, default=3, help="batch-1 attacks (one image each)")
    parser.add_argument("--batches", type=int, default=2, help="attacks on batches of --batch-size")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tv-weight", type=float, default=1e-4, help="1e-4: the reference code's default")
    args = parser.parse_args()
    pool = colour_crops(args.images + args.batches * args.batch_size, seed=0)
    spec = resnet_spec(pool)
    size = args.batch_size
    runs = {
        "batch 1": [attack(spec, pool, [i], args.iterations, args.tv_weight, seed=i) for i in range(args.images)],
        f"batch {size}": [attack(spec, pool, list(range(args.images + size * b, args.images + size * (b + 1))),
                                 args.iterations, args.tv_weight, seed=b) for b in range(args.batches)],
    }
    print(machine())
    print(f"{MODEL} (small_input), untrained, FedSGD lr 0.1, labels known; inverting: {args.iterations} "
          f"iterations, tv_weight {args.tv_weight:g}, 1 restart")
    for name, results in runs.items():
        if not results:  # --images 0 or --batches 0
            continue
        for r in results:
            print(f"{name}: PSNR {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  loss {r['final_loss']:.4f}  "
                  f"{r['seconds']:.0f} s")
        print(f"== {name}: mean PSNR {statistics.mean(r['psnr'] for r in results):.2f} dB, mean SSIM "
              f"{statistics.mean(r['ssim'] for r in results):.3f}, "
              f"{statistics.mean(r['seconds'] for r in results):.0f} s per attack")


if __name__ == "__main__":
    main()
