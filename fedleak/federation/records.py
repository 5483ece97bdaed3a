"""Conversions at the Flower message boundary (plain records in, typed config out)."""

from __future__ import annotations

from flwr.app import ConfigRecord

from fedleak.config import TrainingConfig
from fedleak.data import DatasetSplits
from fedleak.models import ModelSpec
from fedleak.scenario import Scenario

# Reply metric keys the adversarial server reads; "num-examples" is Flower's weighting key.
NUM_EXAMPLES, PARTITION_ID, LOCAL_STEPS, LR, BATCH_SIZE, TRAIN_LOSS = (
    "num-examples", "partition-id", "local-steps", "lr", "batch-size", "train-loss",
)


def training_record(training: TrainingConfig) -> ConfigRecord:
    """What the server configures for local training (sent every round)."""
    return ConfigRecord({key.replace("_", "-"): value for key, value in training.model_dump().items()})


def training_from_record(record: ConfigRecord) -> TrainingConfig:
    fields = TrainingConfig.model_fields
    return TrainingConfig(**{k: record[k.replace("_", "-")] for k in fields})


def model_spec(scenario: Scenario, splits: DatasetSplits) -> ModelSpec:
    """The architecture for this scenario's model on this dataset."""
    mean, std = splits.channel_stats
    return ModelSpec(scenario.model.name, scenario.model.config, splits.image_shape,  # type: ignore[arg-type]
                     splits.num_classes, mean, std)
