"""scikit-learn's bundled 8×8 handwritten digits: the offline default dataset."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from fedleak.config import DatasetConfig
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset

# 1,797 images; the last 297 are held out as the test split (a fixed, seed-free split
# so every process that loads the dataset sees the same pools).
_NUM_TRAIN = 1500


@DATASETS.register("digits")
def load(_: DatasetConfig) -> DatasetSplits:
    bunch = load_digits()
    digits = ImageDataset(torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0,
                          torch.tensor(bunch.target, dtype=torch.int64))
    return DatasetSplits(name="digits", train=digits.subset(slice(_NUM_TRAIN)),
                         test=digits.subset(slice(_NUM_TRAIN, None)), num_classes=10)
