"""Shared fixtures: tiny scenarios on the bundled digits (no downloads, CPU only)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedleak.data import build_plan, load_dataset
from fedleak.federation.records import model_spec
from fedleak.scenario import Scenario, parse_scenario
from fedleak.training import train_locally
from fedleak.updates import ClientUpdate, UpdateMetadata

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def tiny_scenario(**table) -> Scenario:
    return parse_scenario({"name": "tiny", **table})


def fedsgd_update(scenario: Scenario, partition_id: int = 0, server_round: int = 1,
                  seed: int = 0) -> tuple[ClientUpdate, object]:
    """Train one client exactly as the ClientApp does and capture its update."""
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    spec = model_spec(scenario, splits)
    model = spec.build(seed=seed)
    sent = {k: v.clone() for k, v in model.state_dict().items()}
    batches = plan.batches(partition_id, server_round, scenario.training)
    report = train_locally(model, splits.train, batches, scenario.training.lr)
    metadata = UpdateMetadata(scenario.training.algorithm, scenario.training.lr, report.steps,
                              scenario.training.batch_size, report.num_examples)
    update = ClientUpdate("test", server_round, 1, partition_id, sent, model.state_dict(), metadata)
    return update, spec


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
