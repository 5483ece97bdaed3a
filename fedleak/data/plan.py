"""The data plan: which training samples client *p* uses in round *r*.

The plan is a pure function of (scenario seed, dataset, partitioner, partition id,
round, training config). Clients draw their batches from it; the server-side
evaluator re-derives the very same samples to score reconstructions, so ground truth
never travels in a Flower message — in a simulation or across containers alike.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from fedleak.core.config import DatasetConfig, PartitionConfig, TrainingConfig
from fedleak.core.digests import array_digest
from fedleak.data.datasets import load_dataset
from fedleak.data.partitioners import partition_indices

# Separates this plan's random streams from any other use of the scenario seed.
_BATCH_STREAM = 0xBA7C


class DataPlan:
    """Client shards plus the deterministic per-round batch schedule."""

    def __init__(self, seed: int, shards: list[np.ndarray]) -> None:
        empty = [p for p, shard in enumerate(shards) if len(shard) == 0]
        if empty:  # its batches could never be drawn (the schedule loop would not end)
            raise ValueError(f"client {empty[0]} has an empty shard")
        self.seed = seed
        self.shards = shards

    @property
    def num_clients(self) -> int:
        return len(self.shards)

    def shard(self, partition_id: int) -> np.ndarray:
        return self.shards[partition_id]

    def local_steps(self, partition_id: int, training: TrainingConfig) -> int:
        """SGD steps client ``partition_id`` takes in one round."""
        if training.algorithm == "fedsgd":
            return 1
        if training.local_steps:
            return training.local_steps
        per_epoch = math.ceil(len(self.shard(partition_id)) / training.batch_size)
        return training.local_epochs * per_epoch

    def batches(self, partition_id: int, server_round: int, training: TrainingConfig) -> list[np.ndarray]:
        """Training-pool indices of every local step's batch, in order.

        Epochs are fresh permutations of the shard cut into batches of ``batch_size``
        (the last one may be smaller); FedSGD takes the first batch of the first epoch.
        """
        rng = np.random.default_rng([self.seed, _BATCH_STREAM, partition_id, server_round])
        shard, size = self.shard(partition_id), training.batch_size
        steps = self.local_steps(partition_id, training)
        schedule: list[np.ndarray] = []
        while len(schedule) < steps:
            order = rng.permutation(shard)
            schedule += [order[i : i + size] for i in range(0, len(order), size)]
        return schedule[:steps]

    def batch_digest(self, partitions: tuple[int, ...], server_round: int, training: TrainingConfig) -> str:
        """SHA-256 of every local step's batch of ``partitions`` in ``server_round``: equal
        digests mean bit-identical batches (given the same training pool)."""
        return array_digest(batch for p in partitions for batch in self.batches(p, server_round, training))

    def fingerprint(self, training: TrainingConfig) -> dict[str, object]:
        """What fixes every batch of every round: the seed, the shards and the schedule's keys."""
        schedule = training.model_dump(include={"algorithm", "batch_size", "local_epochs", "local_steps"})
        return {"seed": self.seed, "shards": array_digest(self.shards), "schedule": schedule}

    def samples(self, partition_id: int, server_round: int, training: TrainingConfig) -> np.ndarray:
        """The distinct samples a client trained on in a round, in order of first use."""
        used = np.concatenate(self.batches(partition_id, server_round, training))
        _, first = np.unique(used, return_index=True)
        return used[np.sort(first)]


@functools.lru_cache(maxsize=8)
def build_plan(seed: int, dataset: DatasetConfig, partition: PartitionConfig) -> DataPlan:
    """The plan for a scenario (cached per process: clients and evaluator share it)."""
    labels = load_dataset(dataset).train.labels
    return DataPlan(seed, partition_indices(labels, partition, seed))
