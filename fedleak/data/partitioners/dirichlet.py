"""Dirichlet by label (flwr-datasets' ``DirichletPartitioner``): skewed class mixes per client."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from fedleak.core.config import PartitionConfig
from fedleak.core.errors import FedleakError
from fedleak.data.partitioners import PARTITIONERS

_DIRICHLET_DRAWS = 11
"""DirichletPartitioner draws once and retries up to 10 times to meet min_partition_size."""


class DirichletConfig(PartitionConfig):
    name: Literal["dirichlet"] = "dirichlet"
    alpha: float = Field(0.5, gt=0, le=1e6)
    """Dirichlet concentration: small is more skewed."""
    min_partition_size: int = Field(2, ge=1)
    """The fewest images a client may get (at least one, or a client has nothing to train on)."""


@PARTITIONERS.register("dirichlet")
class Dirichlet:
    Config = DirichletConfig

    @staticmethod
    def split(labels: np.ndarray, config: DirichletConfig, seed: int) -> list[np.ndarray]:
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
