"""Checks that need the data, made before a run starts anything heavy (Flower, Ray).

:mod:`fedleak.scenario` checks every value on its own. Whether the model runs on the
dataset's images, whether every client's shard can produce a batch and how many local
steps a round takes depend on the dataset, so they are checked here — with the same
loaders and data plan the run will use, and without importing Flower, Ray or the
``datasets`` library. A scenario that passes both must not fail later for a reason that
could have been known.
"""

from __future__ import annotations

import math

import torch

from fedleak.core.config import MAX_LOCAL_STEPS, MAX_PARAMETERS, TrainingConfig
from fedleak.core.errors import FedleakError, first_line
from fedleak.data import DataPlan, DatasetSplits, build_plan, load_dataset
from fedleak.models import ImageClassifier
from fedleak.scenario import Scenario


def check_runnable(scenario: Scenario) -> None:
    """Load the data, build the model and the data plan, as the run will.

    Raises:
        FedleakError: one line naming what would fail.
    """
    if scenario.app is not None:
        raise FedleakError("this scenario describes an attached Flower app ([app]): it runs inside that app "
                           "(fedleak.attach, under flwr run); 'fedleak attack RUN_DIR' re-attacks its captures")
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)  # an empty shard is an error there
    for partition_id in range(plan.num_clients):
        steps = plan.local_steps(partition_id, scenario.training)
        if steps > MAX_LOCAL_STEPS:
            raise FedleakError(f"training: client {partition_id} would take {steps:,} local steps a round "
                               f"({scenario.training.local_epochs} epochs of its {len(plan.shard(partition_id))} "
                               f"images); at most {MAX_LOCAL_STEPS:,}")
    check_model(scenario, splits, smallest_batch(plan, scenario.training))


def check_model(scenario: Scenario, splits: DatasetSplits, batch: int = 2) -> None:
    """The model builds for the dataset's image shape and classes, is not too large, maps a
    batch of images to one logit per class — in train mode on a batch of ``batch`` images
    (BatchNorm needs more than one value per channel), as a client trains, and in eval mode,
    as the server tests — and every defense can run with it.

    It is first built on PyTorch's ``meta`` device (shapes without memory) to count its
    parameters, and run on the CPU only once it is known to fit: a meta *forward* would
    cost seconds of imports (PyTorch's meta kernels), a real build of a huge model its memory.
    """
    spec = scenario.model_spec(splits)
    where = f"model {spec.name} on {'×'.join(map(str, spec.image_shape))} images"
    try:
        size = spec.parameter_count(seed=scenario.seed)
        if size > MAX_PARAMETERS:
            raise FedleakError(f"{where}: {size:,} parameters; at most {MAX_PARAMETERS:,}")
        model = spec.build(seed=scenario.seed)
        for mode, images in (("train", min(batch, 2)), ("eval", 2)):
            _check_logits(model.train(mode == "train"), images, spec.num_classes, f"{where} ({mode} mode)")
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:  # e.g. a kernel larger
        raise FedleakError(f"{where}: does not run: {first_line(error)}") from None        # than its input
    for index, defense in enumerate(scenario.defense_pipeline().stages):
        try:
            defense.check_model(model.body)
        except ValueError as error:
            raise FedleakError(f"defenses[{index}] ({scenario.defenses[index].name}) with {where}: "
                               f"{first_line(error)}") from None


def _check_logits(model: ImageClassifier, batch: int, num_classes: int, where: str) -> None:
    with torch.no_grad():
        logits = model(torch.zeros(batch, *model.image_shape))
    if not isinstance(logits, torch.Tensor):
        raise FedleakError(f"{where}: outputs a {type(logits).__name__}, not a tensor of logits")
    if tuple(logits.shape) != (batch, num_classes):
        raise FedleakError(f"{where}: outputs {tuple(logits.shape[1:])} per image, not {num_classes} logits")


def smallest_batch(plan: DataPlan, training: TrainingConfig) -> int:
    """The fewest images any client's local step trains on (the data plan's schedule: an
    epoch's last batch holds what is left of the shard)."""
    sizes = []
    for partition_id in range(plan.num_clients):
        shard, steps = len(plan.shard(partition_id)), plan.local_steps(partition_id, training)
        left = shard % training.batch_size
        reaches_last = steps >= math.ceil(shard / training.batch_size)
        sizes.append(left if left and reaches_last else min(shard, training.batch_size))
    return min(sizes)
