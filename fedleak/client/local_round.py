"""One client round, Flower-free: train on the data plan's batches, apply the defenses.

The Flower client paths (:mod:`fedleak.federation.client_app`) only translate messages to
and from :func:`local_round`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedleak.client.training import evaluate, train_locally
from fedleak.core import wire
from fedleak.core.config import TrainingConfig
from fedleak.core.updates import Weights
from fedleak.data import build_plan, load_dataset
from fedleak.defenses import DefensePipeline
from fedleak.scenario import Scenario


@dataclass(frozen=True)
class LocalReply:
    """What the client sends back: the wire arrays, their encoding and the metadata."""

    arrays: dict[str, np.ndarray]
    """Model weights (``encoding`` is ``None``) or a quantizer's encoding of Δ."""
    encoding: str | None
    metrics: dict[str, int | float]


def local_round(scenario: Scenario, partition_id: int, server_round: int, training: TrainingConfig,
                sent: Weights) -> LocalReply:
    """Train from ``sent`` on the data plan's batches for (partition, round), then defend."""
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    pipeline = scenario.defense_pipeline()
    generator = DefensePipeline.generator(scenario.seed, partition_id, server_round)
    model = scenario.model_spec(splits).with_weights(sent)
    batches = plan.batches(partition_id, server_round, training)
    report = train_locally(model, splits.train, batches, training.lr,
                           pipeline.private_training(training.batch_size, generator))

    trained = model.state_dict()
    delta = {k: trained[k] - w for k, w in sent.items()}
    # The defenses act on the floating-point update (parameters, BatchNorm's running statistics);
    # integer buffers (BatchNorm's step counter: public, the server configured the steps) pass as they are.
    delta |= pipeline.apply({k: d for k, d in delta.items() if d.is_floating_point()}, generator)
    if pipeline.encoding:
        arrays = pipeline.encode(delta, generator)
    else:
        arrays = {k: (w + delta[k]).numpy() for k, w in sent.items()}
    metrics = {
        wire.NUM_EXAMPLES: report.num_examples, wire.PARTITION_ID: partition_id,
        wire.LOCAL_STEPS: report.steps, wire.LR: training.lr,
        wire.BATCH_SIZE: training.batch_size, wire.TRAIN_LOSS: report.mean_loss,
    }
    return LocalReply(arrays, pipeline.encoding, metrics)


def local_evaluation(scenario: Scenario, partition_id: int, sent: Weights) -> dict[str, int | float]:
    """Accuracy and loss of ``sent`` on this client's shard, under the keys Flower's examples
    use (``eval_acc``, ``eval_loss``, ``num-examples``): what a stock server's evaluate round asks."""
    splits = load_dataset(scenario.dataset)
    shard = build_plan(scenario.seed, scenario.dataset, scenario.partition).shard(partition_id)
    accuracy, loss = evaluate(scenario.model_spec(splits).with_weights(sent),
                              splits.train.subset(torch.as_tensor(shard)))
    return {"eval_acc": accuracy, "eval_loss": loss, wire.NUM_EXAMPLES: len(shard)}
