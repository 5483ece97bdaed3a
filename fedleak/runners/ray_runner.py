"""The ``ray`` runner, registered by name; the pool itself (:mod:`._ray_pool`) imports Ray
only when a run starts one, so validating a scenario that names it imports no Ray."""

from __future__ import annotations

from collections.abc import Sequence

from fedleak.runners.base import RUNNERS, AttackJob, AttackRunner, OutcomeCallback
from fedleak.runners.ray_config import RayRunnerConfig


@RUNNERS.register("ray")
class RayRunner(AttackRunner):
    """Attacks on a pool of Ray worker actors (:class:`~fedleak.runners._ray_pool.RayPool`)."""

    Config = RayRunnerConfig

    def __init__(self, config: RayRunnerConfig) -> None:
        from fedleak.runners._ray_pool import RayPool  # imports Ray

        self.pool = RayPool(config)

    def submit(self, jobs: Sequence[AttackJob], on_done: OutcomeCallback) -> None:
        self.pool.submit(jobs, on_done)

    def close(self, wait: bool = True) -> None:
        self.pool.close(wait)
