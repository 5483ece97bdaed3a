"""Attack runners: where captured updates are attacked (inline, or on a Ray worker pool)."""

from collections.abc import Callable

from fedleak.adversary.runner.base import AttackJob, AttackOutcome, AttackRunner, batches, execute, execute_batch
from fedleak.adversary.runner.inline import InlineRunner
from fedleak.core.config import RunnerConfig


def _ray_runner(config: RunnerConfig) -> AttackRunner:
    from fedleak.adversary.runner.ray_pool import RayRunner  # imports Ray: only when asked for

    return RayRunner(config)


RUNNERS: dict[str, Callable[[RunnerConfig], AttackRunner]] = {"inline": InlineRunner, "ray": _ray_runner}

__all__ = [
    "RUNNERS", "AttackJob", "AttackOutcome", "AttackRunner", "InlineRunner", "batches", "execute", "execute_batch",
]
