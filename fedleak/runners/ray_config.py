"""The ``ray`` runner's options (read by the scenario without importing Ray)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from fedleak.core.config import RunnerConfig


class RayRunnerConfig(RunnerConfig):
    """The Ray pool's options (beside every runner's ``wait`` and ``max_batch``)."""

    workers: int = Field(2, ge=1, le=1024)
    """Worker actors; each runs one attack at a time."""
    num_cpus: float = Field(0.0, ge=0)
    """CPUs each worker reserves. 0 by default: in a simulation Flower's client actors reserve
    every CPU, and a worker waiting for one would never start."""
    num_gpus: float | None = Field(None, ge=0)
    """GPUs each worker reserves; ``None``: the cluster's GPUs split over the workers (at most
    one each), 0 without a GPU (the attacks then run on CPU)."""
    address: str | None = None
    """An existing Ray cluster (a deployment): ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``;
    ``None``: the simulation's Ray, or a new local one. If it cannot be joined, the run goes
    on and its attacks are stored failed with the reason."""

    @field_validator("address")
    @classmethod
    def _cluster_address(cls, address: str | None) -> str | None:
        if address is not None and not re.fullmatch(r"auto|(ray://)?[\w.\-\[\]:]+:\d{1,5}", address):
            raise ValueError(f"expected 'auto', HOST:PORT or ray://HOST:PORT, got {address!r}")
        return address

    max_pending: int = Field(64, ge=1)
    """Attacks waiting for a worker; beyond this the ``backpressure`` policy applies."""
    backpressure: Literal["block", "reject"] = "block"
    """``block``: the round waits for room in the queue; ``reject``: the attack is stored as failed."""
    grace_s: float = Field(30.0, gt=0)
    """A worker still busy this long after its attack's ``time_budget_s`` is killed and replaced,
    and the attack stored as failed (attacks without a budget are never killed)."""
