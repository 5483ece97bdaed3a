"""Split a training pool into client shards with flwr-datasets partitioners.

Only the labels and row indices go into the in-memory ``datasets.Dataset``; the
partitioner decides which indices each client owns, and the images stay tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from datasets import Dataset
from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner, Partitioner

from fedleak.config import PartitionConfig
from fedleak.errors import FedleakError


def _iid(config: PartitionConfig, seed: int, table: Dataset) -> tuple[Partitioner, Dataset]:
    # IidPartitioner cuts contiguous shards, so shuffle first (seeded) to make them IID.
    return IidPartitioner(num_partitions=config.num_clients), table.shuffle(seed=seed)


def _dirichlet(config: PartitionConfig, seed: int, table: Dataset) -> tuple[Partitioner, Dataset]:
    partitioner = DirichletPartitioner(
        num_partitions=config.num_clients,
        partition_by="label",
        alpha=config.alpha,
        min_partition_size=config.min_partition_size,
        seed=seed,
    )
    return partitioner, table


_PARTITIONERS: dict[str, Callable[[PartitionConfig, int, Dataset], tuple[Partitioner, Dataset]]] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
}


def partition_indices(labels: torch.Tensor, config: PartitionConfig, seed: int) -> list[np.ndarray]:
    """Indices into the training pool owned by each client, deterministic for ``seed``."""
    if config.num_clients > len(labels):
        raise FedleakError(
            f"partition.num_clients: {config.num_clients} clients for {len(labels)} training images"
        )
    table = Dataset.from_dict({"index": np.arange(len(labels)), "label": labels.numpy()})
    partitioner, table = _PARTITIONERS[config.method](config, seed, table)
    partitioner.dataset = table
    try:
        return [
            np.asarray(partitioner.load_partition(p)["index"], dtype=np.int64)
            for p in range(config.num_clients)
        ]
    except ValueError as error:  # e.g. Dirichlet cannot meet min_partition_size
        raise FedleakError(f"partition: {error}".splitlines()[0]) from None
