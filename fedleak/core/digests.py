"""Content digests: what makes two runs comparable, checked from what each stored.

Two arms of a sweep are *paired* when their clients train on bit-identical batches from
the same initial model. The store keeps a SHA-256 of each ingredient (the training pool,
the shards, the initial weights) and of every attacked update's batches, so ``fedleak
compare`` can tell paired runs from unpaired ones without re-loading any data.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def array_digest(arrays: Iterable[np.ndarray | torch.Tensor]) -> str:
    """SHA-256 over each array's dtype, shape and bytes, in order (so a split point, a
    reshape or a cast changes the digest, not only the values)."""
    digest = hashlib.sha256()
    loaded_torch = sys.modules.get("torch")  # not imported: no array can be a tensor (reading stays torch-free)
    for array in arrays:
        if loaded_torch is not None and isinstance(array, loaded_torch.Tensor):
            values = array.detach().cpu().numpy()
        else:
            values = np.asarray(array)
        values = np.ascontiguousarray(values)
        digest.update(f"{values.dtype.str}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def weights_digest(weights: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: its names in order, and each tensor."""
    names = hashlib.sha256("\n".join(weights).encode()).hexdigest()
    return hashlib.sha256((names + array_digest(weights.values())).encode()).hexdigest()


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 of a JSON-serialisable record, independent of its key order."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
