"""The inline runner: each attack runs at once, in the server process."""

from __future__ import annotations

from fedleak.runner.base import AttackJob, AttackRunner, OutcomeCallback, execute


class InlineRunner(AttackRunner):
    def submit(self, job: AttackJob, on_done: OutcomeCallback) -> None:
        on_done(execute(job))
