"""Checks that need the data, made before a run starts anything heavy (Flower, Ray).

:mod:`fedleak.scenario` checks every value on its own. Whether the model runs on the
dataset's images, whether every client's shard can produce a batch and how many local
steps a round takes depend on the dataset, so they are checked here — with the same
loaders and data plan the run will use, and without importing Flower, Ray or the
``datasets`` library. A scenario that passes both must not fail later for a reason that
could have been known.
"""

from __future__ import annotations

import torch

from fedleak.core.config import MAX_LOCAL_STEPS
from fedleak.core.errors import FedleakError, first_line
from fedleak.data import DatasetSplits, build_plan, load_dataset
from fedleak.scenario import Scenario

MAX_PARAMETERS = 200_000_000
"""800 MB per float32 copy; the server holds several per client and round."""


def check_runnable(scenario: Scenario) -> None:
    """Load the data, build the model and the data plan, as the run will.

    Raises:
        FedleakError: one line naming what would fail.
    """
    splits = load_dataset(scenario.dataset)
    check_model(scenario, splits)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)  # an empty shard is an error there
    for partition_id in range(plan.num_clients):
        steps = plan.local_steps(partition_id, scenario.training)
        if steps > MAX_LOCAL_STEPS:
            raise FedleakError(f"training: client {partition_id} would take {steps:,} local steps a round "
                               f"({scenario.training.local_epochs} epochs of its {len(plan.shard(partition_id))} "
                               f"images); at most {MAX_LOCAL_STEPS:,}")


def check_model(scenario: Scenario, splits: DatasetSplits) -> None:
    """The model builds for the dataset's image shape and classes, is not too large, and
    maps a batch of images to one logit per class.

    It is first built on PyTorch's ``meta`` device (shapes without memory) to count its
    parameters, and run on the CPU only once it is known to fit: a meta *forward* would
    cost seconds of imports (PyTorch's meta kernels), a real build of a huge model its memory.
    """
    spec = scenario.model_spec(splits)
    where = f"model {spec.name} on {'×'.join(map(str, spec.image_shape))} images"
    try:
        with torch.device("meta"):
            size = sum(p.numel() for p in spec.build(seed=scenario.seed).parameters())
        if size > MAX_PARAMETERS:
            raise FedleakError(f"{where}: {size:,} parameters; at most {MAX_PARAMETERS:,}")
        with torch.no_grad():
            logits = spec.build(seed=scenario.seed)(torch.zeros(2, *spec.image_shape))
    except (RuntimeError, ValueError, TypeError, IndexError) as error:  # e.g. a kernel larger than its input
        raise FedleakError(f"{where}: does not run: {first_line(error)}") from None
    if tuple(logits.shape) != (2, spec.num_classes):
        raise FedleakError(f"{where}: outputs {tuple(logits.shape[1:])} per image, not {spec.num_classes} logits")
