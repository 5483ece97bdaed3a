"""Shared fixtures: tiny scenarios on the bundled digits (no downloads; attacks on the CPU unless
``FEDLEAK_TEST_DEVICE`` names another device, as benchmarks/gpu_check.sh does on a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

# The suite runs in several pytest workers (pyproject's addopts): OpenMP threads that spin while
# they wait for work would burn the cores the other workers need (set before torch starts its pool).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402

from fedleak.adversary import Adversary
from fedleak.attacks import ATTACKS
from fedleak.attacks.devices import ieee_float32
from fedleak.client.training import offline_update
from fedleak.core.updates import ClientUpdate
from fedleak.data import build_plan, load_dataset
from fedleak.models import ModelSpec
from fedleak.scenario import Scenario, parse_scenario

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per core and one more. About half of the suite's wall time is spent
    waiting for processes it started (Flower, Ray, the CLI) rather than computing, so an extra
    worker keeps the cores busy (the whole suite on 2 cores: 565 s serially, 365 s with 2 workers,
    339 s with 3, 365 s with 4)."""
    return min(8, (os.cpu_count() or 1) + 1)


def imported_after(code: str, watched: Iterable[str]) -> list[str]:
    """The ``watched`` top-level packages in ``sys.modules`` after ``code`` ran in a fresh process."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {tuple(watched)!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


TEST_DEVICE = os.environ.get("FEDLEAK_TEST_DEVICE", "cpu")
"""Where the attack tests compute: the CPU, or ``cuda`` (benchmarks/gpu_check.sh's first stage)."""


def on_test_device(attack: str, **options: Any) -> dict[str, Any]:
    """``options`` of ``attack`` with ``device`` set to :data:`TEST_DEVICE` where the attack has one."""
    device = {"device": TEST_DEVICE} if "device" in ATTACKS.get(attack).Config.model_fields else {}
    return {**options, **device}


def tiny_scenario(**table) -> Scenario:
    return parse_scenario({"name": "tiny", **table})


def fedsgd_update(scenario: Scenario, partition_id: int = 0, server_round: int = 1,
                  seed: int = 0) -> tuple[ClientUpdate, ModelSpec]:
    """Train one client on its planned batches, as the ClientApp does, and capture its update."""
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    spec = scenario.model_spec(splits)
    batches = plan.batches(partition_id, server_round, scenario.training)
    update = offline_update(spec, spec.build(seed=seed).state_dict(), splits.train, batches,
                            scenario.training.lr, partition_id, server_round)
    return update, spec


@pytest.fixture(autouse=True)
def _few_threads():
    """Two threads in a lone pytest, one per worker when the workers share the cores."""
    torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def _attack_arithmetic():
    """Tests that call an attack directly compute as the runners do: IEEE float32 (it matters on a GPU)."""
    with ieee_float32():
        yield


@pytest.fixture
def captured(monkeypatch):
    """Every ClientUpdate the adversary observes, in order."""
    seen = []
    record = Adversary.record_and_plan_attacks

    def recording(self, update, sanity=None):
        seen.append(update)
        return record(self, update, sanity)

    monkeypatch.setattr(Adversary, "record_and_plan_attacks", recording)
    return seen
