import gzip

import numpy as np
import pytest
import torch

from fedleak.core.config import DatasetConfig, PartitionConfig, TrainingConfig
from fedleak.core.errors import FedleakError
from fedleak.data import DataPlan, build_plan, dataset_config, load_dataset
from fedleak.data.idx import read_idx
from fedleak.data.partitioners import PARTITIONERS, partition_indices

from conftest import MNIST_DIR, tiny_scenario


def test_digits_are_images_in_unit_range():
    splits = load_dataset(dataset_config("digits"))
    assert splits.train.images.shape[1:] == (1, 8, 8)
    assert 0.0 <= splits.train.images.min() and splits.train.images.max() <= 1.0
    assert len(splits.train) + len(splits.test) == 1797


def test_digits_are_what_scikit_learn_loads():
    from sklearn.datasets import load_digits

    bunch, splits = load_digits(), load_dataset(dataset_config("digits"))
    images = torch.cat([splits.train.images, splits.test.images])
    assert torch.equal(images, torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0)
    assert torch.cat([splits.train.labels, splits.test.labels]).tolist() == bunch.target.tolist()


@pytest.mark.parametrize(("content", "problem"), [
    (b"garbage", "cannot read"),  # not gzip
    (gzip.compress(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big"))[:-3], "cannot read"),  # cut short
    (gzip.compress(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc"), "bad magic number"),  # float idx
    (gzip.compress(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc"), "its header promises 13"),
], ids=["not gzip", "cut short", "not uint8", "too few bytes"])
def test_a_corrupt_idx_file_is_one_user_error(tmp_path, content, problem):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(content)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(FedleakError, match=problem) as error:
        load_dataset(dataset_config("mnist", data_root=tmp_path))
    assert "\n" not in str(error.value)


def test_idx_images_and_labels_must_agree(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((8010, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(8000))
    with pytest.raises(FedleakError, match="are not N images with N labels"):
        load_dataset(dataset_config("mnist", data_root=tmp_path))


@pytest.mark.parametrize("method", ["iid", "dirichlet"])
def test_partitioning_is_deterministic_and_disjoint(method):
    labels = load_dataset(DatasetConfig()).train.labels
    config = PARTITIONERS.get(method).Config(num_clients=5)
    first, again = partition_indices(labels, config, seed=3), partition_indices(labels, config, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    everything = np.concatenate(first)
    assert len(np.unique(everything)) == len(everything)  # disjoint
    other = partition_indices(labels, config, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_dirichlet_skews_labels_more_than_iid():
    labels = load_dataset(DatasetConfig()).train.labels
    def spread(method):
        options = {"alpha": 0.1} if method == "dirichlet" else {}
        shards = partition_indices(labels, PARTITIONERS.get(method).Config(num_clients=5, **options), 0)
        return np.mean([len(np.unique(labels[s].numpy())) for s in shards])
    assert spread("dirichlet") < spread("iid")


def test_plan_batches_are_a_pure_function_of_their_inputs():
    plan = DataPlan(seed=1, shards=[np.arange(10), np.arange(10, 30)])
    training = TrainingConfig(algorithm="fedavg", batch_size=4, local_epochs=2)
    batches = plan.batches(1, 3, training)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4] * 2
    assert all(np.array_equal(a, b) for a, b in zip(batches, DataPlan(1, plan.shards).batches(1, 3, training)))
    assert not np.array_equal(batches[0], plan.batches(1, 4, training)[0])  # rounds differ
    assert set(np.concatenate(batches)) == set(range(10, 30))
    assert len(plan.samples(1, 3, training)) == 20
    fedsgd = plan.batches(0, 1, TrainingConfig(batch_size=3))
    assert len(fedsgd) == 1 and len(fedsgd[0]) == 3
    steps = plan.batches(0, 1, TrainingConfig(algorithm="fedavg", batch_size=3, local_steps=5))
    assert len(steps) == 5


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_mnist_loads_from_a_folder_with_only_the_t10k_files(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(8010, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, size=8010))
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), pixels)
    splits = load_dataset(dataset_config("mnist", data_root=tmp_path))
    assert len(splits.train) == 8000 and len(splits.test) == 10
    assert torch.allclose(splits.train.images[0, 0], torch.tensor(pixels[0] / 255.0, dtype=torch.float32))


def test_missing_data_root_is_a_user_error(tmp_path):
    with pytest.raises(FedleakError, match="dataset.data_root: no mnist idx files"):
        load_dataset(dataset_config("mnist", data_root=tmp_path / "empty"))
    with pytest.raises(FedleakError, match="dataset.data_root: cifar10 not found"):
        load_dataset(dataset_config("cifar10", data_root=tmp_path / "empty"))


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="../shared/data/mnist is absent")
def test_real_mnist_t10k_split():
    splits = load_dataset(dataset_config("mnist", data_root=MNIST_DIR.resolve()))
    assert splits.image_shape == (1, 28, 28)
    assert len(splits.train) + len(splits.test) == 10_000
    assert splits.train.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the official t10k order


def test_build_plan_shards_cover_distinct_clients():
    plan = build_plan(0, DatasetConfig(), PartitionConfig(num_clients=4))
    assert plan.num_clients == 4
    assert sum(len(s) for s in plan.shards) == 1500


@pytest.mark.parametrize("normalization", ["channel", "pixel"])
def test_the_model_subtracts_the_pools_channel_or_pixel_mean(normalization):
    scenario = tiny_scenario(dataset={"normalization": normalization})
    splits = load_dataset(scenario.dataset)
    model = scenario.model_spec(splits).build()
    centred = model.normalize(splits.train.images).mean(dim=0)  # (C, H, W)
    per_pixel_zero = bool(centred.abs().max() < 1e-5)
    assert per_pixel_zero == (normalization == "pixel")
    assert float(centred.mean()) == pytest.approx(0, abs=1e-5)  # both centre each channel
    assert torch.allclose(model.denormalize(model.normalize(splits.test.images)), splits.test.images, atol=1e-6)
