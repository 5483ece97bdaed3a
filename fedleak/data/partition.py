"""Split a training pool into client shards, in plain numpy.

The schemes follow flwr-datasets' ``IidPartitioner`` (after a seeded
``datasets.Dataset.shuffle``) and ``DirichletPartitioner`` (flwr-datasets 0.6,
``datasets`` 4.x) draw for draw, so the shards are identical to those of runs made
when this module called those libraries. Importing them costs seconds, and a scenario
must be validated (every shard non-empty, batches plannable) before Flower, Ray or
``datasets`` are imported, so nothing here may import them.
``tests/test_partition.py`` checks the equality against the libraries themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from fedleak.core.config import PartitionConfig
from fedleak.core.errors import FedleakError

_DIRICHLET_DRAWS = 11
"""DirichletPartitioner draws once and retries up to 10 times to meet min_partition_size."""


def _iid(labels: np.ndarray, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    # Dataset.shuffle(seed) is default_rng(seed).permutation(n); Dataset.shard(contiguous=True)
    # then gives the first n % k shards one extra row, exactly like np.array_split.
    order = np.random.default_rng(seed).permutation(len(labels))
    return [shard.copy() for shard in np.array_split(order, config.num_clients)]


def _dirichlet(labels: np.ndarray, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    # One generator for everything: per draw, one Dirichlet sample per class (classes in
    # sorted order), each class cut at floor(cumsum(proportions) * class size); after a
    # draw meets min_partition_size, shuffle every shard in client order. No self-balancing
    # (off by default in DirichletPartitioner).
    if not (math.isfinite(config.alpha) and config.alpha > 0):
        raise FedleakError(f"partition.alpha: {config.alpha} must be a finite number > 0")
    rng = np.random.default_rng(seed)
    clients = config.num_clients
    concentration = np.full(clients, float(config.alpha))
    classes = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    members = np.concatenate(classes)
    for _ in range(_DIRICHLET_DRAWS):
        # Client c's shard is class 0's c-th piece, then class 1's, …: a stable sort of the
        # members by owner keeps that order (vectorised, however many clients).
        owners = np.concatenate([_owners(len(group), rng.dirichlet(concentration)) for group in classes])
        sizes = np.bincount(owners, minlength=clients)
        shards = np.split(members[np.argsort(owners, kind="stable")], np.cumsum(sizes)[:-1])
        if sizes.min() >= config.min_partition_size:
            break
    else:
        raise FedleakError(
            f"partition: dirichlet gave some client fewer than min_partition_size="
            f"{config.min_partition_size} images in {_DIRICHLET_DRAWS} draws (alpha={config.alpha}, "
            f"{config.num_clients} clients for {len(labels)} images); raise partition.alpha, lower "
            f"partition.min_partition_size or use fewer partition.num_clients"
        )
    for shard in shards:
        rng.shuffle(shard)
    return shards


def _owners(size: int, proportions: np.ndarray) -> np.ndarray:
    """The client of each of a class's ``size`` members: the class cut at floor(cumsum(p) · size)."""
    cuts = (np.cumsum(proportions) * size).astype(int)[:-1]
    return np.repeat(np.arange(len(proportions)), np.diff(np.r_[0, cuts, size]))


_PARTITIONERS: dict[str, Callable[[np.ndarray, PartitionConfig, int], list[np.ndarray]]] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
}


def partition_indices(labels: torch.Tensor, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Indices into the training pool owned by each client, deterministic for ``seed``."""
    if config.num_clients > len(labels):
        raise FedleakError(
            f"partition.num_clients: {config.num_clients} clients for {len(labels)} training images"
        )
    shards = _PARTITIONERS[config.method](labels.numpy(), config, seed)
    empty = next((p for p, shard in enumerate(shards) if len(shard) == 0), None)
    if empty is not None:
        raise FedleakError(
            f"partition: client {empty} gets no training images ({config.method}, "
            f"min_partition_size={config.min_partition_size}, {config.num_clients} clients for "
            f"{len(labels)} images); set partition.min_partition_size >= 1, raise partition.alpha "
            f"or use fewer partition.num_clients"
        )
    return [shard.astype(np.int64, copy=False) for shard in shards]
