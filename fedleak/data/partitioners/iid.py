"""IID: a seeded permutation cut into equal shards (flwr-datasets' ``IidPartitioner``)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fedleak.core.config import PartitionConfig
from fedleak.data.partitioners import PARTITIONERS


class IidConfig(PartitionConfig):
    name: Literal["iid"] = "iid"


@PARTITIONERS.register("iid")
class Iid:
    Config = IidConfig

    @staticmethod
    def split(labels: np.ndarray, config: IidConfig, seed: int) -> list[np.ndarray]:
        # Dataset.shuffle(seed) is default_rng(seed).permutation(n); Dataset.shard(contiguous=True)
        # then gives the first n % k shards one extra row, exactly like np.array_split.
        order = np.random.default_rng(seed).permutation(len(labels))
        return [shard.copy() for shard in np.array_split(order, config.num_clients)]
