"""Attack runners: where captured updates are attacked (inline, or on a Ray worker pool)."""

from collections.abc import Callable

from fedleak.config import RunnerConfig
from fedleak.runner.base import AttackJob, AttackOutcome, AttackRunner, batches, execute, execute_batch
from fedleak.runner.inline import InlineRunner


def _ray_runner(config: RunnerConfig) -> AttackRunner:
    from fedleak.runner.ray_pool import RayRunner  # imports Ray: only when asked for

    return RayRunner(config)


RUNNERS: dict[str, Callable[[RunnerConfig], AttackRunner]] = {"inline": InlineRunner, "ray": _ray_runner}

__all__ = [
    "RUNNERS", "AttackJob", "AttackOutcome", "AttackRunner", "InlineRunner", "batches", "execute", "execute_batch",
]
