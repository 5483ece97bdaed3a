"""Partitioners: split a training pool into client shards, in plain numpy.

Each scheme is one module registered in :data:`PARTITIONERS` with its own ``Config``
(a :class:`~fedleak.core.config.PartitionConfig`); plugins add theirs the same way.

The schemes follow flwr-datasets' ``IidPartitioner`` (after a seeded
``datasets.Dataset.shuffle``) and ``DirichletPartitioner`` (flwr-datasets 0.6,
``datasets`` 4.x) draw for draw, so the shards are identical to those of runs made
when fedleak called those libraries. Importing them costs seconds, and a scenario
must be validated (every shard non-empty, batches plannable) before Flower, Ray or
``datasets`` are imported, so nothing here may import them.
``tests/test_partition.py`` checks the equality against the libraries themselves.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import numpy as np
import torch

from fedleak.core.config import PartitionConfig
from fedleak.core.errors import FedleakError
from fedleak.core.registry import Registry, import_submodules


class Partitioner(Protocol):
    """A registered scheme: its ``Config`` and ``split(labels, config, seed)`` → one index array per client."""

    Config: type[PartitionConfig]

    @staticmethod
    def split(labels: np.ndarray, config: Any, seed: int) -> list[np.ndarray]: ...


PARTITIONERS: Registry[Partitioner] = Registry("partitioner")


def partition_indices(labels: torch.Tensor, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Indices into the training pool owned by each client, deterministic for ``seed``."""
    if config.num_clients > len(labels):
        raise FedleakError(
            f"partition.num_clients: {config.num_clients} clients for {len(labels)} training images"
        )
    shards = PARTITIONERS.get(config.name).split(labels.numpy(), config, seed)
    empty = next((p for p, shard in enumerate(shards) if len(shard) == 0), None)
    if empty is not None:
        options = [f"partition.{key}={value}" for key, value in config.model_dump().items()
                   if key not in ("name", "num_clients")]
        raise FedleakError(
            f"partition: client {empty} gets no training images ({config.name}, {config.num_clients} clients "
            f"for {len(labels)} images); use fewer partition.num_clients or change {', '.join(options) or 'the data'}"
        )
    return [shard.astype(np.int64, copy=False) for shard in shards]


import_submodules(sys.modules[__name__])

__all__ = ["PARTITIONERS", "Partitioner", "partition_indices"]
