"""Datasets by name, client partitioning and the deterministic data plan."""

import sys

from fedleak.core.registry import import_submodules
from fedleak.data.datasets import DATASETS, DatasetSplits, ImageDataset, dataset_config, load_dataset
from fedleak.data.partitioners import PARTITIONERS
from fedleak.data.plan import DataPlan, build_plan

import_submodules(sys.modules[__name__])

__all__ = [
    "DATASETS", "PARTITIONERS", "DataPlan", "DatasetSplits", "ImageDataset", "build_plan", "dataset_config",
    "load_dataset",
]
