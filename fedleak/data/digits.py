"""scikit-learn's bundled 8×8 handwritten digits: the offline default dataset.

Read straight from the CSV that scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``:
64 pixel values 0–16 and the label per row), the same values ``load_digits`` returns
(``tests/test_data.py`` checks), without importing scikit-learn, which takes seconds.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fedleak.core.config import DatasetConfig
from fedleak.core.errors import FedleakError
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset

# 1,797 images; the last 297 are held out as the test split (a fixed, seed-free split
# so every process that loads the dataset sees the same pools).
_NUM_TRAIN = 1500


def digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FedleakError("dataset digits: scikit-learn, which ships it, is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


class DigitsConfig(DatasetConfig):
    name: Literal["digits"] = "digits"


@DATASETS.register("digits")
class Digits:
    Config = DigitsConfig

    @staticmethod
    def load(config: DigitsConfig) -> DatasetSplits:
        return _read()


def _read() -> DatasetSplits:
    with gzip.open(digits_file()) as file:
        table = np.loadtxt(file, delimiter=",")
    digits = ImageDataset(torch.tensor(table[:, :-1], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0,
                          torch.tensor(table[:, -1], dtype=torch.int64))
    return DatasetSplits(name="digits", train=digits.subset(slice(_NUM_TRAIN)),
                         test=digits.subset(slice(_NUM_TRAIN, None)), num_classes=10)
