"""Captured updates on disk: what the server received, kept for resume and later re-attacks.

One safetensors file per round (``captures/round-{r}.safetensors``; an aggregate the
server unmasked on the SecAgg+ path goes to ``round-{r}-aggregate.safetensors``), written
once, whole (a temporary file renamed into place), 0600. It holds the weights the server
sent once per distinct copy (``sent{j}.<key>``) and each update's returned weights
(``{i}.<key>``), in the model's own dtypes, and the samples a lab client reported with it
(``truth{i}.images``, ``truth{i}.labels``); the header's metadata holds each update's node,
partition, training metadata, warnings and flags as JSON, so a :class:`ClientUpdate` is
rebuilt exactly (``known_labels``, a threat-model capability, is re-derived, never stored).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from fedleak.core.updates import ClientUpdate, ReportedSamples, UpdateMetadata, Weights
from fedleak.results.store import make_private_dir, write_private

if TYPE_CHECKING:
    import torch

CAPTURES = "captures"


class CaptureStore:
    """The ``captures/`` folder of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.directory = Path(run_dir) / CAPTURES

    def path(self, server_round: int, kind: str = "") -> Path:
        return self.directory / f"round-{server_round}{'-' + kind if kind else ''}.safetensors"

    def write(self, server_round: int, updates: list[ClientUpdate], kind: str = "") -> int:
        """Store ``updates`` (one round's) in one file; returns its size in bytes (0: nothing to store)."""
        if not updates:
            return 0
        sent: list[Weights] = []
        tensors: dict[str, torch.Tensor] = {}
        described = []
        for index, update in enumerate(updates):
            copy = next((j for j, weights in enumerate(sent) if weights is update.global_weights), None)
            if copy is None:
                copy = len(sent)
                sent.append(update.global_weights)
                tensors.update(_prefixed(f"sent{copy}", update.global_weights))
            tensors.update(_prefixed(str(index), update.client_weights))
            if update.reported is not None:
                tensors.update(_prefixed(f"truth{index}", {"images": update.reported.images,
                                                           "labels": update.reported.labels}))
            described.append({"sent": copy, "run_id": update.run_id, "round": update.server_round,
                              "node_id": str(update.node_id), "partition_id": update.partition_id,
                              "metadata": asdict(update.metadata), "aggregate_of": list(update.aggregate_of),
                              "crafted": update.crafted, "keys": list(update.client_weights),
                              "warnings": list(update.warnings), "reported": update.reported is not None})
        from safetensors.torch import save  # torch: only where tensors are written or read

        make_private_dir(self.directory)
        data = save(tensors, metadata={"updates": json.dumps(described)})
        write_private(self.path(server_round, kind), data)
        return len(data)

    def read(self, server_round: int, kind: str = "") -> list[ClientUpdate]:
        """The updates stored for ``server_round`` (empty when none were)."""
        path = self.path(server_round, kind)
        if not path.is_file():
            return []
        with safe_open(str(path), framework="pt") as file:
            described = json.loads(file.metadata()["updates"])
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 - not a dict
        return [_update(entry, index, tensors) for index, entry in enumerate(described)]

    def discard_after(self, server_round: int) -> None:
        """Remove the files of rounds after ``server_round`` (a resumed run re-creates them)."""
        for stored_round, kind in self.stored():
            if stored_round > server_round:
                self.path(stored_round, kind).unlink()

    def stored(self) -> list[tuple[int, str]]:
        """The (round, kind) of every file stored, by round (a round's clients before its aggregate)."""
        found = [path.stem.split("-", 2)[1:] for path in self.directory.glob("round-*.safetensors")]
        return sorted((int(parts[0]), parts[1] if len(parts) > 1 else "") for parts in found)

    def size_bytes(self) -> tuple[int, int]:
        """(files, bytes) stored."""
        sizes = [path.stat().st_size for path in self.directory.glob("round-*.safetensors")]
        return len(sizes), sum(sizes)

    def count_updates(self) -> int:
        """How many updates the stored files hold (read from their headers only)."""
        count = 0
        for server_round, kind in self.stored():
            with safe_open(str(self.path(server_round, kind)), framework="numpy") as file:  # headers: no torch
                count += len(json.loads(file.metadata()["updates"]))
        return count


def _prefixed(prefix: str, weights: Weights) -> dict[str, torch.Tensor]:
    # safetensors refuses views sharing storage: each tensor gets its own contiguous copy
    return {f"{prefix}.{key}": tensor.detach().cpu().contiguous().clone() for key, tensor in weights.items()}


def _update(entry: dict[str, Any], index: int, tensors: dict[str, torch.Tensor]) -> ClientUpdate:
    keys = entry["keys"]
    return ClientUpdate(
        run_id=entry["run_id"], server_round=entry["round"], node_id=int(entry["node_id"]),
        partition_id=entry["partition_id"],
        global_weights={key: tensors[f"sent{entry['sent']}.{key}"] for key in keys},
        client_weights={key: tensors[f"{index}.{key}"] for key in keys},
        metadata=UpdateMetadata(**entry["metadata"]), aggregate_of=tuple(entry["aggregate_of"]),
        crafted=_crafted(entry), warnings=tuple(entry.get("warnings", ())),
        reported=ReportedSamples(tensors[f"truth{index}.images"], tensors[f"truth{index}.labels"])
        if entry.get("reported") else None)


def _crafted(entry: dict[str, Any]) -> str | None:
    """The crafting an update answered; a file written before craftings were components marks a
    random-parameter query with a flag."""
    return entry.get("crafted") or ("random-query" if entry.get("random_query") else None)
