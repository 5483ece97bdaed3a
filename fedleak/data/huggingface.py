"""``huggingface`` (alias ``hf``): a Hugging Face dataset with an Image column, read offline.

``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
(read with ``datasets.load_from_disk``), another local folder ``datasets.load_dataset``
can read (data files such as parquet, or an ``imagefolder`` layout; it then writes its
Arrow cache to ``HF_DATASETS_CACHE`` as usual), or the name of a Hub dataset already in
the local Hugging Face cache. The Hub is switched off while fedleak loads
(``datasets.config.HF_HUB_OFFLINE``, as ``HF_DATASETS_OFFLINE=1`` would): nothing is
ever downloaded. The ``datasets`` library is imported only here, when the data is
loaded, never to validate a scenario.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from fedleak.core.errors import FedleakError, first_line
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset
from fedleak.data.images import (
    ImageSourceConfig,
    adjust,
    as_labels,
    count_classes,
    decode_image,
    split_off_test,
    stack_images,
)

_KEY = "dataset.path"
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)


class HuggingFaceConfig(ImageSourceConfig):
    name: Literal["huggingface", "hf"] = "huggingface"
    path: str = Field(min_length=1)
    """A local folder (saved dataset or data files), or a Hub dataset's name in the local cache."""
    subset: str | None = None
    """The dataset's configuration (``load_dataset(path, subset)``), where it has several."""
    split: str = "train"
    """The split that is the training pool (a saved single ``Dataset`` is its own split)."""
    test_split: str | None = None
    """The test split; ``None``: ``test_fraction`` of each class of ``split``."""
    image_column: str | None = None
    """The Image column; ``None``: the dataset's only one."""
    label_column: str = "label"
    num_classes: int | None = Field(None, ge=1, le=1_000_000)
    """Classes the model tells apart; ``None``: a ClassLabel column's count, else the largest label + 1."""

    @field_validator("path")
    @classmethod
    def _local_or_a_name(cls, path: str) -> str:
        local = Path(path).expanduser()
        if local.exists():
            return str(local.absolute())
        if path.startswith(("/", ".", "~")):
            raise ValueError(f"{local} does not exist")
        return path

    @property
    def source(self) -> str:
        return self.path


@DATASETS.register("huggingface")
@DATASETS.register("hf")
class HuggingFace:
    Config = HuggingFaceConfig

    @staticmethod
    def load(config: HuggingFaceConfig) -> DatasetSplits:
        with offline() as datasets:
            source = _open(datasets, config)
            pool = _rows(source, config.split, "split", config)
            train = _images_and_labels(datasets, pool, config.split, config)
            if config.test_split is None:
                train, test = split_off_test(train, config.test_fraction, config.split_seed)
            else:
                test = _images_and_labels(datasets, _rows(source, config.test_split, "test_split", config),
                                          config.test_split, config)
        declared = config.num_classes or _declared_classes(datasets, pool, config.label_column)
        num_classes = count_classes(torch.cat([train.labels, test.labels]), declared, "dataset.num_classes")
        return DatasetSplits(name=config.name, train=train, test=test, num_classes=num_classes)


@contextlib.contextmanager
def offline() -> Iterator[ModuleType]:
    """The ``datasets`` library, with the Hugging Face Hub switched off until the block ends."""
    import datasets
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield datasets
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _open(datasets: ModuleType, config: HuggingFaceConfig) -> Any:
    """The saved dataset at ``path``, or what ``load_dataset`` finds there (a Dataset or a DatasetDict).

    Raises:
        FedleakError: one line: nothing readable there, or the name is not in the cache.
    """
    local = Path(config.path)
    if any((local / marker).is_file() for marker in _SAVED_MARKERS):
        if config.subset is not None:
            raise FedleakError(f"dataset.subset: {local} is a saved dataset (save_to_disk), which has no subsets")
        return datasets.load_from_disk(str(local))
    try:
        return datasets.load_dataset(config.path, config.subset)
    except (ConnectionError, FileNotFoundError, ValueError) as error:  # offline, no data files, unknown subset
        what = (f"{local} is neither a saved dataset (save_to_disk) nor a folder of data files datasets reads"
                if local.is_dir() else
                f"'{config.path}' is not a local folder, nor a dataset in the Hugging Face cache "
                f"({datasets.config.HF_DATASETS_CACHE}); fedleak never downloads: save it with save_to_disk, or "
                "load it once with datasets where a network exists")
        raise FedleakError(f"{_KEY}: {what} ({first_line(error)})") from None


def _rows(source: Any, split: str, key: str, config: HuggingFaceConfig) -> Any:
    """One split of the source (a DatasetDict is a dict of splits; a Dataset is one split)."""
    if not isinstance(source, dict):
        if key == "test_split":
            raise FedleakError(f"dataset.test_split: {config.path} is a single saved split (a Dataset, not a "
                               "DatasetDict); leave test_split unset to split off test_fraction of it")
        return source
    if split not in source:
        raise FedleakError(f"dataset.{key}: {config.path} has no split '{split}' (it has: {', '.join(source)})")
    return source[split]


def _images_and_labels(datasets: ModuleType, rows: Any, split: str, config: HuggingFaceConfig) -> ImageDataset:
    column = _image_column(datasets, rows, split, config)
    if config.label_column not in rows.column_names:
        raise FedleakError(f"dataset.label_column: split '{split}' has no column '{config.label_column}' "
                           f"(it has: {', '.join(rows.column_names)})")
    encoded = rows.cast_column(column, datasets.Image(decode=False))[column]
    items = [f"row {row} of split '{split}'" for row in range(len(rows))]
    pixels = [decode_image(_file_or_bytes(cell, item), item, _KEY) for cell, item in zip(encoded, items)]
    images = stack_images(pixels, items, _KEY, config.resize)
    labels = as_labels(rows[config.label_column], f"dataset.label_column: '{config.label_column}' of split '{split}'")
    return ImageDataset(adjust(images, config), labels)


def _image_column(datasets: ModuleType, rows: Any, split: str, config: HuggingFaceConfig) -> str:
    """``image_column``, or the split's only Image column.

    Raises:
        FedleakError: the column is missing or not an Image feature, or there is no or more than one to choose from.
    """
    features = rows.features
    images = [str(name) for name, feature in features.items() if isinstance(feature, datasets.Image)]
    column = config.image_column
    if column is None and len(images) == 1:
        return images[0]
    if column is None:
        found = f"several ({', '.join(images)})" if images else f"none (columns: {', '.join(features)})"
        raise FedleakError(f"dataset.image_column: split '{split}' has {found} Image columns; name the one to use")
    if column not in features:
        raise FedleakError(f"dataset.image_column: split '{split}' has no column '{column}' "
                           f"(it has: {', '.join(features)})")
    if column not in images:
        raise FedleakError(f"dataset.image_column: '{column}' of split '{split}' is a {type(features[column]).__name__}"
                           ", not an Image feature")
    return column


def _file_or_bytes(cell: Any, item: str) -> Path | bytes:
    """An undecoded Image cell (``{"bytes", "path"}``): its bytes, else its file."""
    if cell and cell.get("bytes") is not None:
        return bytes(cell["bytes"])
    if cell and cell.get("path"):
        return Path(cell["path"])
    raise FedleakError(f"{_KEY}: {item} has no image")


def _declared_classes(datasets: ModuleType, rows: Any, column: str) -> int | None:
    """The class count a ClassLabel column declares (``None`` for plain integers)."""
    feature = rows.features[column]
    return feature.num_classes if isinstance(feature, datasets.ClassLabel) else None
