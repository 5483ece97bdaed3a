"""Where attacks execute. A runner takes :class:`AttackJob`s and reports
:class:`AttackOutcome`s to a callback; it never lets an attack's exception escape.

The strategy only sees this interface, so the inline runner and a worker pool are
interchangeable.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from fedleak.attacks import ATTACKS, Attack, AttackConfig, AttackNotApplicable, Budget, Reconstruction
from fedleak.models import ModelSpec
from fedleak.updates import ClientUpdate


@dataclass(frozen=True)
class AttackJob:
    """One attack against one captured update, with what the server knows of the model."""

    update: ClientUpdate
    attack: str
    config: AttackConfig
    model: ModelSpec


@dataclass(frozen=True)
class AttackOutcome:
    job: AttackJob
    reconstruction: Reconstruction | None
    error: str | None
    seconds: float


OutcomeCallback = Callable[[AttackOutcome], None]


def execute(job: AttackJob, attack_class: type[Attack] | None = None) -> AttackOutcome:
    """Run one job to an outcome; any failure becomes ``error`` (one line).

    ``attack_class`` defaults to the registry's entry for ``job.attack``; a worker process
    is handed the class looked up where the job was submitted, so attacks registered
    there at run time (a plugin, a test) run on workers too.
    """
    started = time.perf_counter()
    try:
        attack = (attack_class or ATTACKS.get(job.attack))(job.config)
        model = job.model.with_weights(job.update.global_weights)
        reconstruction = attack.run(job.update, model, Budget(job.config.time_budget_s))
        return AttackOutcome(job, reconstruction, None, time.perf_counter() - started)
    except AttackNotApplicable as reason:
        error = f"not applicable: {reason}"
    except Exception as failure:  # noqa: BLE001 - an attack's crash must not stop the federation
        frame = traceback.extract_tb(failure.__traceback__)[-1]
        error = f"{type(failure).__name__}: {failure} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
    return AttackOutcome(job, None, error, time.perf_counter() - started)


class AttackRunner(ABC):
    @abstractmethod
    def submit(self, job: AttackJob, on_done: OutcomeCallback) -> None:
        """Start ``job``; ``on_done`` receives its outcome (maybe later, maybe elsewhere)."""

    def close(self, wait: bool = True) -> None:  # noqa: B027 (optional hook, not abstract)
        """Finish (``wait``) or abandon pending jobs; the default has none pending."""
