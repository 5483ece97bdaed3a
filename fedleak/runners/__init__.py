"""Attack runners: where captured updates are attacked (inline, or on a Ray worker pool).

Runners register in :data:`RUNNERS` by name, each with its own ``Config``
(a :class:`~fedleak.core.config.RunnerConfig`); plugins add theirs the same way.
"""

import sys

from fedleak.core.registry import import_submodules
from fedleak.runners.base import (
    RUNNERS,
    AttackJob,
    AttackOutcome,
    AttackRunner,
    RunnerFactory,
    batches,
    execute,
    execute_batch,
)
from fedleak.runners.inline import InlineRunner

import_submodules(sys.modules[__name__])

__all__ = [
    "RUNNERS", "AttackJob", "AttackOutcome", "AttackRunner", "InlineRunner", "RunnerFactory", "batches", "execute",
    "execute_batch",
]
