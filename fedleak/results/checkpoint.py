"""The global model after the last completed round: where ``fedleak resume`` starts.

``checkpoint.safetensors`` in the run directory, replaced whole after each round's
evaluation is stored (a temporary file renamed into place, 0600), so it always names a
round whose rows are all in the database. Its metadata holds the round.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from fedleak.core.updates import Weights
from fedleak.results.store import write_private

CHECKPOINT = "checkpoint.safetensors"


def write_checkpoint(run_dir: Path, server_round: int, weights: Weights) -> None:
    from safetensors.torch import save  # torch: only where tensors are written or read

    tensors = {key: tensor.detach().cpu().contiguous().clone() for key, tensor in weights.items()}
    write_private(Path(run_dir) / CHECKPOINT, save(tensors, metadata={"round": str(server_round)}))


def read_checkpoint(run_dir: Path) -> tuple[int, Weights] | None:
    """(the last completed round, the global model after it); ``None``: no round completed."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as file:
        return int(file.metadata()["round"]), {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118


def checkpoint_round(run_dir: Path) -> int | None:
    """The last completed round, from the checkpoint's header alone (``None``: none completed)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as file:  # the header only: no torch
        return int(file.metadata()["round"])
