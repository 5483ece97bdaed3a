"""Every reconstruction kept whole: ``reconstructions/<name>.safetensors`` in the run directory.

The scores and the PNG grid use the reconstructions matched to the client's samples; an
attack may return more (8 for a client that trained on 1), and its labels and final
objective say how it went. This file keeps all of it, as the attack returned it: ``images``
(B, C, H, W) in [0, 1], ``labels`` (B,) when the attack recovered them, and its extras
(iterations, restarts, final objective, …) as JSON in the header. Written once (a temporary
file renamed into place), 0600, under the same ``save_images`` switch as the grids: both are
pictures of the clients' private data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from fedleak.results.store import make_private_dir, write_private

RECONSTRUCTIONS = "reconstructions"


@dataclass(frozen=True)
class StoredReconstruction:
    """What an attack returned for one update."""

    images: torch.Tensor
    labels: torch.Tensor | None
    extras: dict[str, Any] = field(default_factory=dict)


def write_reconstruction(run_dir: Path, name: str, reconstruction: StoredReconstruction) -> str:
    """Store ``reconstruction`` as ``reconstructions/<name>.safetensors``; returns that path,
    relative to ``run_dir`` (what the database stores)."""
    relative = Path(RECONSTRUCTIONS) / f"{name}.safetensors"
    tensors = {"images": reconstruction.images.detach().cpu().float().contiguous()}
    if reconstruction.labels is not None:
        tensors["labels"] = reconstruction.labels.detach().cpu().long().contiguous()
    make_private_dir(Path(run_dir) / RECONSTRUCTIONS)
    write_private(Path(run_dir) / relative, save(tensors, metadata={"extras": json.dumps(reconstruction.extras)}))
    return str(relative)


def read_reconstruction(run_dir: Path, relative: str) -> StoredReconstruction:
    """The reconstruction stored at ``relative`` (as the database names it)."""
    with safe_open(str(Path(run_dir) / relative), framework="pt") as file:
        names = set(file.keys())
        labels = file.get_tensor("labels") if "labels" in names else None
        return StoredReconstruction(file.get_tensor("images"), labels, json.loads(file.metadata()["extras"]))
