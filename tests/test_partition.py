"""The numpy partitioners give exactly the shards flwr-datasets gave, without importing it."""

import ast
import warnings

import numpy as np
import pytest
import torch

import fedleak.data.partitioners as partitioners_package
import fedleak.data.partitioners.dirichlet as dirichlet_module
import fedleak.data.partitioners.iid as iid_module
from fedleak.core.config import DatasetConfig
from fedleak.core.errors import FedleakError
from fedleak.data import load_dataset
from fedleak.data.partitioners import partition_indices
from fedleak.data.partitioners.dirichlet import DirichletConfig
from fedleak.data.partitioners.iid import IidConfig

from conftest import imported_after

pytestmark = pytest.mark.xdist_group("test_partition")  # its module fixture runs once, on one worker

SYNTHETIC = torch.as_tensor(np.array([9, 1, 6, 3])[np.random.default_rng(0).integers(0, 4, 60)])
"""60 labels from four classes that are neither contiguous nor sorted by first appearance."""


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DatasetConfig()).train.labels  # 1,500 labels


@pytest.fixture(scope="module")
def flwr_shards():
    """The shards as fedleak computed them before, with `datasets` and flwr-datasets."""
    Dataset = pytest.importorskip("datasets").Dataset
    partitioners = pytest.importorskip("flwr_datasets.partitioner")

    def compute(labels, config, seed):
        table = Dataset.from_dict({"index": np.arange(len(labels)), "label": labels.numpy()})
        if config.name == "iid":
            partitioner, table = partitioners.IidPartitioner(config.num_clients), table.shuffle(seed=seed)
        else:
            partitioner = partitioners.DirichletPartitioner(
                num_partitions=config.num_clients, partition_by="label", alpha=config.alpha,
                min_partition_size=config.min_partition_size, seed=seed)
        partitioner.dataset = table
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one warning per failed Dirichlet draw
            return [np.asarray(partitioner.load_partition(p)["index"], dtype=np.int64)
                    for p in range(config.num_clients)]

    return compute


def _labels(name, digits):
    return digits if name == "digits" else SYNTHETIC


def _assert_same(ours, theirs):
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs):
        assert mine.dtype == np.int64
        np.testing.assert_array_equal(mine, reference)


@pytest.mark.parametrize("data, num_clients, seed", [
    ("digits", 1, 0), ("digits", 4, 3), ("digits", 7, 11), ("digits", 25, 2023),
    ("synthetic", 3, 5), ("synthetic", 60, 1),  # 60 clients: one image each
])
def test_iid_shards_match_flwr_datasets(flwr_shards, digits, data, num_clients, seed):
    labels, config = _labels(data, digits), IidConfig(num_clients=num_clients)
    _assert_same(partition_indices(labels, config, seed), flwr_shards(labels, config, seed))


@pytest.mark.parametrize("data, num_clients, alpha, min_size, seed, outcome", [
    ("digits", 4, 0.1, 2, 0, "same"),
    ("digits", 5, 0.5, 2, 3, "same"),
    ("digits", 10, 5.0, 10, 7, "same"),
    ("digits", 7, 0.1, 0, 1, "same"),
    ("digits", 5, 0.5, 150, 3, "same"),        # met on the 2nd draw
    ("digits", 10, 0.1, 100, 0, "too small"),  # never met in 11 draws
    ("digits", 30, 0.1, 0, 5, "empty"),
    ("synthetic", 4, 0.5, 2, 0, "same"),
    ("synthetic", 6, 5.0, 1, 4, "same"),
    ("synthetic", 4, 0.5, 8, 1, "same"),       # met on the 3rd draw
    ("synthetic", 4, 0.5, 10, 46, "same"),     # met on the 11th (last) draw
    ("synthetic", 5, 0.5, 150, 0, "too small"),
    ("synthetic", 20, 1000.0, 0, 0, "empty"),
])
def test_dirichlet_shards_match_flwr_datasets(flwr_shards, digits, data, num_clients, alpha,
                                              min_size, seed, outcome):
    labels = _labels(data, digits)
    # The scenario schema asks for min_partition_size >= 1; the function must cope with 0 anyway.
    make = DirichletConfig.model_construct if min_size == 0 else DirichletConfig
    config = make(num_clients=num_clients, alpha=alpha, min_partition_size=min_size)
    if outcome == "too small":
        with pytest.raises(ValueError, match="max number of attempts"):
            flwr_shards(labels, config, seed)
        with pytest.raises(FedleakError, match=r"^partition: dirichlet gave some client fewer than") as error:
            partition_indices(labels, config, seed)
        assert "\n" not in str(error.value)
        return
    theirs = flwr_shards(labels, config, seed)
    if outcome == "empty":
        first = next(p for p, shard in enumerate(theirs) if len(shard) == 0)
        with pytest.raises(FedleakError, match=rf"^partition: client {first} gets no training images"):
            partition_indices(labels, config, seed)
        return
    assert min(len(shard) for shard in theirs) >= max(min_size, 1)
    _assert_same(partition_indices(labels, config, seed), theirs)


def test_partitioning_imports_neither_datasets_nor_flower_nor_ray():
    code = (
        "import torch\n"
        "from fedleak.data.partitioners import PARTITIONERS, partition_indices\n"
        "for name in ('iid', 'dirichlet'):\n"
        "    partition_indices(torch.arange(40) % 4, PARTITIONERS.get(name).Config(), 0)\n"
    )
    assert imported_after(code, ("datasets", "flwr_datasets", "flwr", "ray")) == []


@pytest.mark.parametrize("module", [partitioners_package, iid_module, dirichlet_module])
def test_partitioner_modules_import_only_numpy_torch_pydantic_and_fedleak(module):
    tree = ast.parse(open(module.__file__, encoding="utf-8").read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    roots = {name.split(".")[0] for name in imported}
    assert roots <= {"__future__", "collections", "math", "sys", "typing", "numpy", "torch", "pydantic",
                     "fedleak"}, roots


def test_an_empty_shard_is_a_one_line_error():
    # Ten classes of three images; with a huge alpha every class is cut near j/10 * 3, which
    # gives client 0 nothing from any class, and min_partition_size=0 (which the scenario
    # schema rejects, but the function must survive) lets that through.
    labels = torch.arange(10).repeat_interleave(3)
    config = DirichletConfig.model_construct(num_clients=10, alpha=1e6, min_partition_size=0)
    with pytest.raises(FedleakError, match=r"^partition: client 0 gets no training images \(") as error:
        partition_indices(labels, config, seed=0)
    assert "\n" not in str(error.value) and "partition.min_partition_size" in str(error.value)


@pytest.mark.parametrize("alpha", [float("inf"), float("nan")])
def test_a_non_finite_alpha_is_a_one_line_error(alpha):
    config = DirichletConfig.model_construct(num_clients=4, alpha=alpha, min_partition_size=2)
    with pytest.raises(FedleakError, match=r"^partition\.alpha: ") as error:
        partition_indices(torch.arange(40) % 4, config, seed=0)
    assert "\n" not in str(error.value)


def test_more_clients_than_images_is_a_one_line_error():
    with pytest.raises(FedleakError, match=r"^partition\.num_clients: 41 clients for 40 training images$"):
        partition_indices(torch.arange(40) % 4, IidConfig(num_clients=41), seed=0)
