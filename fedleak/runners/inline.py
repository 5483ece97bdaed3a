"""The inline runner: each submission runs at once, in the server process, batch after batch."""

from __future__ import annotations

from collections.abc import Sequence

from fedleak.attacks.base import preload_in_background
from fedleak.core.config import RunnerConfig
from fedleak.core.timing import PHASES
from fedleak.runners.base import (
    RUNNERS,
    AttackJob,
    AttackRunner,
    OutcomeCallback,
    batches,
    execute_batch,
    report,
)


@RUNNERS.register("inline")
class InlineRunner(AttackRunner):
    """Each submission at once, in the calling thread: simple, and what tests use."""

    Config = RunnerConfig

    def __init__(self, config: RunnerConfig | None = None) -> None:
        self.max_batch = (config or RunnerConfig()).max_batch
        preload_in_background()

    def submit(self, jobs: Sequence[AttackJob], on_done: OutcomeCallback) -> None:
        for batch in batches(jobs, self.max_batch):
            with PHASES.measure("attacks"):
                outcomes = execute_batch(batch)
            for outcome in outcomes:
                report(on_done, outcome)
