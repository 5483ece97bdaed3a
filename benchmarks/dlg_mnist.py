"""DLG on LeNet/MNIST, as in Zhu et al. 2019 (Fig. 3 / Table 1 setting).

LeNet with every weight ~ U(−0.5, 0.5), one FedSGD step (lr 1) on an MNIST batch from
the real t10k split, then DLG (L-BFGS, 300 iterations) on the captured update.
Success = MSE < 1e-3 after one-to-one matching. Measured, not asserted.

    python benchmarks/dlg_mnist.py [--data-root ../shared/data/mnist] [--images 10] [--batches 3]
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from fedleak.adversary.metrics import SUCCESS_MSE, score
from fedleak.attacks import ATTACKS, Budget
from fedleak.client.training import offline_update
from fedleak.models import ModelSpec

from mnist_setup import lenet_on_mnist, machine, mnist_parser


def attack_once(spec: ModelSpec, images_index: list[int], pool, seed: int, iterations: int) -> dict:
    sent = spec.build(seed=seed).state_dict()
    update = offline_update(spec, sent, pool, [torch.tensor(images_index)], lr=1.0)
    dlg = ATTACKS.get("dlg")(ATTACKS.get("dlg").Config(iterations=iterations, seed=seed))
    started = time.perf_counter()
    recon = dlg.run(update, spec.with_weights(sent), Budget())
    seconds = time.perf_counter() - started
    truth = pool.images[images_index]
    scores = score(recon.images, truth, recon.labels, pool.labels[images_index])
    return {"mse": float(scores.mse.mean()), "psnr": float(scores.psnr.mean()),
            "recovered": int((scores.mse < SUCCESS_MSE).sum()), "batch": len(images_index),
            "label_accuracy": scores.label_accuracy, "iterations": recon.extras["iterations"],
            "seconds": seconds}


def main() -> None:
    parser = mnist_parser(__doc__)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    splits, spec = lenet_on_mnist(args.data_root, "uniform")
    pool = splits.train
    runs = {"batch 1": [attack_once(spec, [i], pool, i, args.iterations) for i in range(args.images)]}
    size = args.batch_size
    runs[f"batch {size}"] = [
        attack_once(spec, list(range(100 + size * b, 100 + size * (b + 1))), pool, b, args.iterations)
        for b in range(args.batches)
    ]
    print(machine())
    for name, results in runs.items():
        for r in results:
            print(f"{name}: MSE {r['mse']:.2e}  PSNR {r['psnr']:6.2f}  recovered {r['recovered']}/{r['batch']}  "
                  f"labels {r['label_accuracy']:.0%}  iterations {r['iterations']}  {r['seconds']:.1f}s")
        success = sum(r["recovered"] == r["batch"] for r in results)
        print(f"== {name}: {success}/{len(results)} attacks with every image at MSE < {SUCCESS_MSE:g}; "
              f"median time {statistics.median(r['seconds'] for r in results):.1f}s")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
