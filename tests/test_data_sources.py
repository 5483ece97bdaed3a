"""The user-data loaders (image-folder, npz, huggingface) and the checked CIFAR/MNIST files and downloads.

Every input is made in tmp_path; the network is never used: downloads are simulated by
replacing torchvision's download_url, or fail because name lookups and connections to
anything but 127.0.0.1 are made to fail (the ``no_network`` fixture).
"""

import errno
import gzip
import hashlib
import io
import pickle
import socket
import sys
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from user_images import photo_crops, write_image_folder

from fedleak import cli
from fedleak.core.errors import FedleakError
from fedleak.data import dataset_config, load_dataset
from fedleak.data.downloads import md5_of
from fedleak.data.images import LUMA
from fedleak.scenario import parse_scenario

from conftest import imported_after, tiny_scenario

pytestmark = pytest.mark.xdist_group("test_data_sources")  # its module fixture runs once, on one worker

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml"


def _error(options: dict, match: str) -> str:
    """Loading (or validating) the dataset fails with one line that contains ``match``."""
    with pytest.raises(FedleakError) as error:
        load_dataset(tiny_scenario(dataset=options).dataset)
    message = str(error.value)
    assert match in message and "\n" not in message, message
    return message


@pytest.fixture
def no_network(monkeypatch):
    """Name lookups and connections fail for anything but 127.0.0.1; returns what was tried."""
    tried = []
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def failing_lookup(host, *args, **kwargs):
        if host == "127.0.0.1":
            return lookup(host, *args, **kwargs)
        tried.append(host)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution (simulated)")

    def failing_connect(self, address):
        if isinstance(address, tuple) and address[0] != "127.0.0.1":
            tried.append(address[0])
            raise OSError(errno.ENETUNREACH, "Network is unreachable (simulated)")
        return connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", failing_lookup)
    monkeypatch.setattr(socket.socket, "connect", failing_connect)
    return tried


@pytest.fixture(scope="module")
def crops():
    return photo_crops(40, size=16)


@pytest.fixture
def folder(tmp_path, crops):
    return write_image_folder(tmp_path / "images", *crops)


# --- image-folder -----------------------------------------------------------------------------------------------


def test_an_image_folder_loads_as_imagefolder_reads_it_with_a_stratified_test_split(folder, crops):
    pixels, labels = crops
    splits = load_dataset(tiny_scenario(dataset={"name": "image-folder", "root": str(folder)}).dataset)
    assert splits.image_shape == (3, 16, 16) and splits.num_classes == 4
    assert splits.train.images.dtype == torch.float32 and 0 <= splits.train.images.min() < splits.train.images.max() <= 1
    assert splits.train.labels.bincount().tolist() == [8] * 4 and splits.test.labels.bincount().tolist() == [2] * 4
    # Class k is folder class_<k> (the k-th by name): every image is there once, with its class as its label.
    everything = torch.cat([splits.train.images, splits.test.images])
    found = torch.cat([splits.train.labels, splits.test.labels])
    expected = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    matches = [(everything == image).all(dim=(1, 2, 3)).nonzero().flatten() for image in expected]
    assert all(len(match) == 1 for match in matches)
    assert [int(found[match]) for match in matches] == labels.tolist()
    other_seed = load_dataset(dataset_config("image-folder", root=folder, split_seed=1))
    assert not torch.equal(other_seed.test.images, splits.test.images)


def test_image_folder_options_resize_grayscale_and_extensions(folder, crops):
    square = load_dataset(dataset_config("image-folder", root=folder, resize=8))
    assert square.image_shape == (3, 8, 8)
    assert load_dataset(dataset_config("image-folder", root=folder, resize=[8, 12])).image_shape == (3, 8, 12)
    colour = load_dataset(dataset_config("image-folder", root=folder))
    gray = load_dataset(dataset_config("image-folder", root=folder, grayscale=True))
    assert gray.image_shape == (1, 16, 16)
    luma = torch.einsum("nchw,c->nhw", colour.train.images, torch.tensor(LUMA))
    assert torch.allclose(gray.train.images[:, 0], luma)
    Image.fromarray(crops[0][0]).save(folder / "class_0" / "extra.jpg", quality=95)
    _error({"name": "image-folder", "root": str(folder), "extensions": [".JPG"]},
           f"dataset.root: class folder {folder / 'class_1'} holds no images (files ending in .jpg)")
    only_png = load_dataset(dataset_config("image-folder", root=folder, extensions=[".PNG"]))
    with_jpeg = load_dataset(dataset_config("image-folder", root=folder, split_seed=2))  # not the cached config
    assert len(only_png.train) + len(only_png.test) == 40 and len(with_jpeg.train) + len(with_jpeg.test) == 41


def test_the_cache_key_is_the_whole_config(folder):
    config = dataset_config("image-folder", root=folder)
    assert load_dataset(config) is load_dataset(dataset_config("image-folder", root=folder))
    resized = load_dataset(dataset_config("image-folder", root=folder, resize=8))
    assert resized.image_shape != load_dataset(config).image_shape


@pytest.mark.parametrize(("options", "match"), [
    ({"root": "/nonexistent/images"}, "dataset.root: /nonexistent/images does not exist"),
    ({"colour": True}, "dataset.colour: Extra inputs are not permitted"),
    ({"test_fraction": 1}, "dataset.test_fraction: Input should be less than 1"),
    ({"resize": 0}, "dataset.resize[0]: Input should be greater than or equal to 1"),
    ({"resize": [8, 8, 8]}, "dataset.resize: Tuple should have at most 2 items"),
    ({"grayscale": "yes"}, "dataset.grayscale: Input should be a valid boolean"),
    ({"extensions": ["png"]}, 'dataset.extensions: expected file endings such as ".png"'),
])
def test_image_folder_options_are_validated_with_the_scenario(tmp_path, options, match):
    with pytest.raises(FedleakError) as error:
        tiny_scenario(dataset={"name": "image-folder", "root": str(tmp_path), **options})
    assert match in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_a_root_that_is_a_file_or_missing_is_a_user_error(tmp_path):
    _error({"name": "image-folder"}, "dataset.root: Field required")
    (tmp_path / "file.png").write_bytes(b"")
    _error({"name": "image-folder", "root": str(tmp_path / "file.png")}, "file.png is not a folder")


def test_image_folder_layout_errors_name_the_folder(tmp_path, crops):
    Image.fromarray(crops[0][0]).save(tmp_path / "loose.png")
    _error({"name": "image-folder", "root": str(tmp_path)}, f"dataset.root: {tmp_path} has no class subfolders")
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("no images here")
    _error({"name": "image-folder", "root": str(tmp_path)},
           f"dataset.root: class folder {tmp_path / 'cats'} holds no images (files ending in .jpg, .jpeg, .png")


def test_an_unreadable_image_is_named(folder):
    (folder / "class_1" / "broken.png").write_bytes(b"\x89PNG not really")
    _error({"name": "image-folder", "root": str(folder)},
           f"dataset.root: cannot read image {folder / 'class_1' / 'broken.png'}: cannot identify image file")


def test_images_of_different_sizes_need_resize(folder, crops):
    Image.fromarray(np.zeros((20, 18, 3), dtype=np.uint8)).save(folder / "class_2" / "big.png")
    message = _error({"name": "image-folder", "root": str(folder)}, "dataset.root: images differ in size: ")
    assert f"{folder / 'class_0' / '000.png'} is 16×16, {folder / 'class_2' / 'big.png'} is 20×18" in message
    assert "set dataset.resize" in message
    assert load_dataset(dataset_config("image-folder", root=folder, resize=16)).image_shape == (3, 16, 16)


def test_a_split_that_leaves_no_test_image_is_a_user_error(tmp_path, crops):
    write_image_folder(tmp_path, crops[0][:2], np.array([0, 1]))
    _error({"name": "image-folder", "root": str(tmp_path)}, "dataset.test_fraction: 0.2 of 2 images leaves no test image")


# --- npz --------------------------------------------------------------------------------------------------------


def _npz(tmp_path, **arrays):
    """A new file each time: loading is cached on the config, whose key is the path, not the contents."""
    path = tmp_path / f"data{len(list(tmp_path.glob('*.npz')))}.npz"
    np.savez(path, **arrays)
    return {"name": "npz", "path": str(path)}


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_npz_layouts_are_told_apart_by_the_channel_axis(tmp_path, crops, layout):
    pixels, labels = crops
    x = pixels if layout == "nhwc" else pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255
    splits = load_dataset(tiny_scenario(dataset=_npz(tmp_path, x=x, y=labels)).dataset)
    assert splits.image_shape == (3, 16, 16) and splits.num_classes == 4
    assert len(splits.train) == 32 and len(splits.test) == 8
    first = torch.from_numpy(pixels[0]).permute(2, 0, 1).float() / 255
    assert any(torch.allclose(image, first) for image in torch.cat([splits.train.images, splits.test.images]))


def test_npz_gray_images_an_explicit_layout_a_test_split_and_num_classes(tmp_path, crops):
    pixels, labels = crops
    gray = load_dataset(tiny_scenario(dataset=_npz(tmp_path, x=pixels[..., 0], y=labels.astype(float))).dataset)
    assert gray.image_shape == (1, 16, 16)
    ambiguous = np.zeros((6, 3, 5, 3), dtype=np.uint8)  # 3×5×3 images, or 5×3 with 3 channels?
    config = _npz(tmp_path, x=ambiguous, y=np.arange(6) % 2, x_test=ambiguous[:2], y_test=np.array([0, 1]))
    _error(config, 'both axis 1 and axis 3 can be the channels (size 1 or 3); set dataset.layout = "nchw" or "nhwc"')
    splits = load_dataset(tiny_scenario(dataset={**config, "layout": "nhwc", "num_classes": 5}).dataset)
    assert splits.image_shape == (3, 3, 5) and (len(splits.train), len(splits.test), splits.num_classes) == (6, 2, 5)
    assert load_dataset(dataset_config("npz", path=config["path"], layout="nchw", resize=4)).image_shape == (3, 4, 4)


@pytest.mark.parametrize(("arrays", "match"), [
    ({"y": np.zeros(4)}, "has no array 'x' (it holds: y); expected x (images) and y (labels)"),
    ({"x": np.zeros((4, 8, 8))}, "has no array 'y' (it holds: x)"),
    ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4), "x_test": np.zeros((2, 8, 8))}, "has no array 'y_test'"),
    ({"x": np.zeros((4, 8, 8)), "y": np.zeros(3)}, "dataset.path: x holds 4 images, y 3 labels"),
    ({"x": np.full((4, 8, 8), np.nan), "y": np.zeros(4)}, "dataset.path: x holds 256 non-finite values"),
    ({"x": np.full((4, 8, 8), 2.0), "y": np.zeros(4)}, "x holds values in [2, 2]; float images must lie in [0, 1]"),
    ({"x": np.zeros((4, 8, 8), dtype=np.int64), "y": np.zeros(4)}, "x has dtype int64; expected uint8 (0–255) or floats"),
    ({"x": np.zeros((4, 8)), "y": np.zeros(4)}, "x has shape (4, 8); expected N×H×W, N×C×H×W or N×H×W×C"),
    ({"x": np.zeros((4, 5, 8, 8)), "y": np.zeros(4)}, "neither axis 1 nor axis 3 can be the channels"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 1, -1, 0])}, "dataset.path: y: negative label -1"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array([0, 0.5, 1, 0])}, "dataset.path: y: labels are not integers (e.g. 0.5)"),
    ({"x": np.zeros((4, 8, 8)), "y": np.array(list("abab"))}, "y: labels are not integers (e.g. <U1)"),
    ({"x": np.zeros((4, 8, 8)), "y": np.zeros((4, 1))}, "y: labels have shape (4, 1); expected one label per image"),
    ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4), "x_test": np.zeros((2, 9, 9)), "y_test": np.zeros(2)},
     "dataset.path: x_test holds 1×9×9 images, x 1×8×8 ones"),
])
def test_npz_errors_are_one_line_each(tmp_path, arrays, match):
    _error(_npz(tmp_path, **arrays), match)


def test_npz_num_classes_below_a_label_and_unreadable_files(tmp_path):
    _error({**_npz(tmp_path, x=np.zeros((20, 4, 4)), y=np.arange(20) % 5), "num_classes": 3},
           "dataset.num_classes: 3, but the data holds label 4")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    _error({"name": "npz", "path": str(tmp_path / "garbage.npz")}, "dataset.path: cannot read")
    np.save(tmp_path / "one.npy", np.zeros(3))
    _error({"name": "npz", "path": str(tmp_path / "one.npy")}, "holds a single array, not x and y")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    _error({"name": "npz", "path": str(tmp_path / "objects.npz")}, "Object arrays cannot be loaded when allow_pickle=False")
    _error({"name": "npz", "path": str(tmp_path / "absent.npz")}, "dataset.path: ")


# --- Hugging Face -----------------------------------------------------------------------------------------------


@pytest.fixture
def hf_data(tmp_path, crops):
    datasets = pytest.importorskip("datasets")
    pixels, labels = crops
    features = datasets.Features({"img": datasets.Image(), "coarse": datasets.Value("int64"),
                                  "label": datasets.ClassLabel(num_classes=6)})
    rows = datasets.Dataset.from_dict({"img": [Image.fromarray(p) for p in pixels], "coarse": (labels // 2).tolist(),
                                       "label": labels.tolist()}, features=features)
    datasets.DatasetDict(train=rows.select(range(30)), test=rows.select(range(30, 40))).save_to_disk(tmp_path / "dict")
    rows.save_to_disk(tmp_path / "single")
    return tmp_path


def test_a_saved_dataset_dict_and_a_single_saved_split_load(hf_data, crops, no_network):
    both = load_dataset(dataset_config("huggingface", path=str(hf_data / "dict"), test_split="test"))
    assert both.image_shape == (3, 16, 16) and (len(both.train), len(both.test)) == (30, 10)
    assert both.num_classes == 6  # what the ClassLabel declares, not the largest label + 1
    assert torch.equal(both.train.images[0], torch.from_numpy(crops[0][0]).permute(2, 0, 1).float() / 255)
    single = load_dataset(dataset_config("hf", path=str(hf_data / "single"), label_column="coarse", grayscale=True,
                                         resize=[8, 8]))
    assert single.image_shape == (1, 8, 8) and single.num_classes == 2 and (len(single.train), len(single.test)) == (32, 8)
    assert no_network == []


def test_a_local_folder_loads_through_load_dataset(tmp_path, folder, monkeypatch, no_network):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    splits = load_dataset(dataset_config("huggingface", path=str(folder)))  # datasets' imagefolder builder
    assert splits.image_shape == (3, 16, 16) and splits.num_classes == 4 and len(splits.train) == 32
    assert no_network == []


def test_a_dataset_neither_local_nor_cached_is_one_line_without_network_traffic(tmp_path, monkeypatch, no_network):
    datasets = pytest.importorskip("datasets")
    offline_before = datasets.config.HF_HUB_OFFLINE
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    message = _error({"name": "huggingface", "path": "someone/not-cached"},
                     "dataset.path: 'someone/not-cached' is not a local folder, nor a dataset in the Hugging Face cache")
    assert "fedleak never downloads" in message
    assert no_network == []  # offline mode: not even a name lookup
    assert datasets.config.HF_HUB_OFFLINE is offline_before  # the Hub is switched off only while loading


@pytest.mark.parametrize(("options", "match"), [
    ({"path": "dict", "split": "validation"}, "dataset.split: {dict} has no split 'validation' (it has: train, test)"),
    ({"path": "dict", "test_split": "dev"}, "dataset.test_split: {dict} has no split 'dev'"),
    ({"path": "single", "test_split": "test"}, "dataset.test_split: {single} is a single saved split"),
    ({"path": "dict", "subset": "plain"}, "dataset.subset: {dict} is a saved dataset (save_to_disk), which has no subsets"),
    ({"path": "dict", "label_column": "y"}, "dataset.label_column: split 'train' has no column 'y' (it has: img, coarse, label)"),
    ({"path": "dict", "image_column": "image"}, "dataset.image_column: split 'train' has no column 'image'"),
    ({"path": "dict", "image_column": "coarse"}, "dataset.image_column: 'coarse' of split 'train' is a Value, not an Image feature"),
    ({"path": "dict", "num_classes": 3}, "dataset.num_classes: 3, but the data holds label 3"),
    ({"path": "/nonexistent/saved"}, "dataset.path: /nonexistent/saved does not exist"),
    ({"path": "dict", "colour": 1}, "dataset.colour: Extra inputs are not permitted"),
])
def test_hugging_face_errors_are_one_line_each(hf_data, options, match):
    paths = {name: str(hf_data / name) for name in ("dict", "single")}
    options = {**options, "path": paths.get(options["path"], options["path"])}
    _error({"name": "huggingface", **options}, match.format(**paths))


def test_image_columns_are_detected_or_must_be_named(tmp_path, crops):
    datasets = pytest.importorskip("datasets")
    image = [Image.fromarray(p) for p in crops[0][:10]]
    two = datasets.Dataset.from_dict({"a": image, "b": image, "label": [0, 1] * 5},
                                     features=datasets.Features({"a": datasets.Image(), "b": datasets.Image(),
                                                                 "label": datasets.Value("int64")}))
    two.save_to_disk(tmp_path / "two")
    _error({"name": "hf", "path": str(tmp_path / "two")}, "dataset.image_column: split 'train' has several (a, b) Image columns")
    assert load_dataset(dataset_config("hf", path=str(tmp_path / "two"), image_column="b")).num_classes == 2
    datasets.Dataset.from_dict({"pixels": [[0.0]] * 4, "label": [0, 1, 0, 1]}).save_to_disk(tmp_path / "none")
    _error({"name": "hf", "path": str(tmp_path / "none")}, "has none (columns: pixels, label) Image columns")


def test_validating_a_scenario_imports_neither_datasets_nor_pil_nor_torchvision(tmp_path, folder):
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 8, 8)), y=np.zeros(4))
    code = (
        "from fedleak.scenario import parse_scenario\n"
        f"for dataset in ({{'name': 'image-folder', 'root': {str(folder)!r}, 'resize': 8}},\n"
        f"                {{'name': 'npz', 'path': {str(tmp_path / 'data.npz')!r}}},\n"
        "                {'name': 'huggingface', 'path': 'someone/anything', 'split': 'train'}):\n"
        "    parse_scenario({'name': 'x', 'dataset': dataset})\n"
    )
    assert imported_after(code, ("datasets", "PIL", "torchvision", "huggingface_hub")) == []


# --- CIFAR and MNIST: missing, wrong layout, corrupt; downloads -------------------------------------------------


def _fake_cifar(folder, monkeypatch, per_batch=3):
    """A CIFAR-10 batches folder of a few random images, with torchvision's MD5s set to match it."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name, _ in CIFAR10.train_list + CIFAR10.test_list:
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class {k}" for k in range(10)]}))
    md5 = {path.name: md5_of(path) for path in folder.iterdir()}
    for attribute in ("train_list", "test_list"):
        monkeypatch.setattr(CIFAR10, attribute, [[name, md5[name]] for name, _ in getattr(CIFAR10, attribute)])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    return folder


def test_cifar_loads_after_its_md5_check(tmp_path, monkeypatch):
    _fake_cifar(tmp_path / "cifar-10-batches-py", monkeypatch)
    splits = load_dataset(dataset_config("cifar10", data_root=tmp_path))
    assert splits.image_shape == (3, 32, 32) and (len(splits.train), len(splits.test)) == (15, 3)


def test_cifar_messages_tell_missing_layout_and_checksum_apart(tmp_path, monkeypatch):
    _error({"name": "cifar10", "data_root": str(tmp_path / "nowhere")},
           f"dataset.data_root: cifar10 not found: {tmp_path / 'nowhere'} does not exist; set dataset.download = true")
    (tmp_path / "data_batch_1").write_bytes(b"x")
    message = _error({"name": "cifar10", "data_root": str(tmp_path)},
                     f"dataset.data_root: cifar10 not found in {tmp_path}: expected torchvision's layout "
                     f"{tmp_path / 'cifar-10-batches-py'}/ with data_batch_1, data_batch_2")
    assert "(missing: data_batch_1, data_batch_2" in message
    assert f"data_root is the batches folder itself: set it to its parent, {tmp_path.parent}" in message
    batches = tmp_path / "real" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    from torchvision.datasets import CIFAR10

    for name, _ in CIFAR10.train_list + CIFAR10.test_list + [["batches.meta", ""]]:
        (batches / name).write_bytes(b"truncated")
    _error({"name": "cifar10", "data_root": str(tmp_path / "real")},
           f"dataset.data_root: {batches / 'data_batch_1'} fails its MD5 check (expected c99cafc152244af753f735de768cd75f")


def test_cifar_download_without_network_is_one_line_and_leaves_the_folder_as_it_was(tmp_path, no_network):
    (tmp_path / "notes.txt").write_text("mine")
    message = _error({"name": "cifar10", "data_root": str(tmp_path), "download": True},
                     "dataset.download: cannot download cifar-10-python.tar.gz (https://www.cs.toronto.edu/")
    assert "Temporary failure in name resolution (simulated)" in message and "put the files in dataset.data_root" in message
    assert no_network and set(no_network) <= {"www.cs.toronto.edu"}
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"] and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_download_through_the_cli_is_exit_2_and_one_line(monkeypatch, capsys, tmp_path, no_network):
    monkeypatch.setattr(sys, "argv", ["fedleak", "run", str(QUICKSTART), "--out", str(tmp_path / "runs"),
                                      "--set", "dataset.name=mnist", "--set", f"dataset.data_root='{tmp_path}'",
                                      "--set", "dataset.download=true"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: dataset.download: cannot download train-images-idx3-ubyte.gz")
    assert not (tmp_path / "runs").exists()


def _serve(files, monkeypatch, calls):
    """torchvision's download_url, replaced: it writes ``files[filename]`` (no network)."""
    import torchvision.datasets.utils

    def download_url(url, root, filename=None, md5=None):
        calls.append(url)
        (Path(root) / filename).write_bytes(files[filename])

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", download_url)


def test_a_cifar_download_goes_through_a_temporary_folder_and_replaces_nothing(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    made = _fake_cifar(tmp_path / "made" / "cifar-10-batches-py", monkeypatch)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(made, arcname="cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.getvalue()).hexdigest())
    calls = []
    _serve({"cifar-10-python.tar.gz": archive.getvalue()}, monkeypatch, calls)
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    splits = load_dataset(dataset_config("cifar10", data_root=root, download=True))
    assert len(splits.train) == 15 and calls == [CIFAR10.url]
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "notes.txt"]  # no archive, no temp folder
    # A batches folder already there is never replaced, even a broken one.
    broken = tmp_path / "broken"
    (broken / "cifar-10-batches-py").mkdir(parents=True)
    (broken / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"mine")
    message = _error({"name": "cifar10", "data_root": str(broken), "download": True}, "(missing: data_batch_2")
    assert "remove it and set dataset.download = true" in message and len(calls) == 1
    assert (broken / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"mine"


def _idx(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def test_mnist_messages_tell_missing_and_layout_apart(tmp_path):
    _error({"name": "mnist", "data_root": str(tmp_path / "nowhere")},
           f"dataset.data_root: no mnist idx files: {tmp_path / 'nowhere'} does not exist")
    (tmp_path / "mnist.zip").write_bytes(b"")
    _error({"name": "mnist", "data_root": str(tmp_path)},
           f"in it or in {tmp_path / 'MNIST' / 'raw'} (found: mnist.zip)")


def test_an_mnist_download_fetches_only_missing_files_and_checks_their_md5(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (20, 28, 28))),
             "train-labels-idx1-ubyte.gz": _idx(rng.integers(0, 10, 20)),
             "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (10, 28, 28))),
             "t10k-labels-idx1-ubyte.gz": _idx(rng.integers(0, 10, 10))}
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    monkeypatch.setattr(MNIST, "resources", [(name, md5[name]) for name in files])
    mine = _idx(rng.integers(0, 256, (10, 28, 28)))  # the user's own t10k images: kept, not replaced
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(mine)
    calls = []
    _serve({**files, "train-labels-idx1-ubyte.gz": b"a different file"}, monkeypatch, calls)
    message = _error({"name": "mnist", "data_root": str(tmp_path), "download": True},
                     "dataset.download: cannot download train-labels-idx1-ubyte.gz (https://ossci-datasets.s3.amazonaws.com"
                     f"/mnist/train-labels-idx1-ubyte.gz: MD5 {hashlib.md5(b'a different file').hexdigest()}")
    assert "http://yann.lecun.com/exdb/mnist/train-labels-idx1-ubyte.gz: MD5" in message  # each mirror tried
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t10k-images-idx3-ubyte.gz"]  # nothing placed, no temp folder
    calls.clear()
    _serve(files, monkeypatch, calls)
    splits = load_dataset(dataset_config("mnist", data_root=tmp_path, download=True))
    assert (len(splits.train), len(splits.test)) == (20, 10)
    assert sorted(p.name for p in (tmp_path / "MNIST" / "raw").iterdir()) == [
        "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes() == mine and len(calls) == 3


def test_the_scenario_schema_reads_every_new_dataset_by_name(folder, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 8, 8)), y=np.zeros(4))
    for table in ({"name": "image-folder", "root": str(folder), "resize": 8},
                  {"name": "npz", "path": str(tmp_path / "data.npz")}, {"name": "hf", "path": "a/b"}):
        scenario = parse_scenario({"name": "x", "dataset": table})
        again = parse_scenario(tomllib.loads(scenario.to_toml()))
        assert again.dataset == scenario.dataset  # the stored scenario.toml reads back as the same config
