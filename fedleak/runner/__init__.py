"""Attack runners: where captured updates are attacked (inline; a worker pool later)."""

from fedleak.runner.base import AttackJob, AttackOutcome, AttackRunner, execute
from fedleak.runner.inline import InlineRunner

RUNNERS: dict[str, type[AttackRunner]] = {"inline": InlineRunner}

__all__ = ["RUNNERS", "AttackJob", "AttackOutcome", "AttackRunner", "InlineRunner", "execute"]
