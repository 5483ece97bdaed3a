"""Bytes stored per captured update (``captures/round-<r>.safetensors``), LeNet and ResNet-18.

A round's file holds the weights the server sent once and each kept update's returned
weights, in the model's dtypes, plus a JSON header; so the bytes per update fall from two
models' worth (one kept update) towards one (many). Each update here is the sent model
plus a small perturbation, as a client's would be; the file is written by fedleak's own
``CaptureStore`` and its size read back from disk.

    python benchmarks/capture_bytes.py [--kept 1,8,100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from fedleak.core.updates import ClientUpdate, UpdateMetadata, Weights
from fedleak.models import MODELS, ModelSpec
from fedleak.results.captures import CaptureStore

MODELS_MEASURED = {
    "lenet (MNIST 1×28×28)": ("lenet", {}, (1, 28, 28)),
    "torchvision:resnet18 (CIFAR stem, 3×32×32)": ("torchvision:resnet18", {"small_input": True}, (3, 32, 32)),
}


def sent_weights(name: str, options: dict, shape: tuple[int, int, int]) -> Weights:
    config = MODELS.get(name).Config.model_validate(options)
    spec = ModelSpec(name, config, shape, 10, (0.5,) * shape[0], (0.5,) * shape[0])
    return spec.build(seed=0).state_dict()


def round_bytes(sent: Weights, kept: int) -> int:
    metadata = UpdateMetadata("fedavg", 0.1, 20, 16, 320)
    updates = [ClientUpdate("bench", 1, 1000 + i, i, sent,
                            {k: v + 0.01 if v.is_floating_point() else v for k, v in sent.items()}, metadata)
               for i in range(kept)]
    with tempfile.TemporaryDirectory() as directory:
        store = CaptureStore(Path(directory))
        store.write(1, updates)
        return store.path(1).stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kept", default="1,8,100", help="updates kept per round, comma-separated")
    args = parser.parse_args()
    kept_counts = [int(k) for k in args.kept.split(",")]
    print("| model | parameters + buffers | model bytes | " +
          " | ".join(f"{k} kept: bytes per update" for k in kept_counts) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in kept_counts) + " |")
    for label, (name, options, shape) in MODELS_MEASURED.items():
        sent = sent_weights(name, options, shape)
        numbers = sum(v.numel() for v in sent.values())
        model_bytes = sum(v.numel() * v.element_size() for v in sent.values())
        per_update = [round_bytes(sent, k) / k for k in kept_counts]
        print(f"| {label} | {numbers:,} | {model_bytes / 1e6:.3f} MB | " +
              " | ".join(f"{b / 1e6:.3f} MB ({b / model_bytes:.2f}×)" for b in per_update) + " |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
