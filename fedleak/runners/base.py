"""Where attacks execute. A runner takes :class:`AttackJob`s and reports
:class:`AttackOutcome`s to a callback; it never lets an attack's exception escape.

The strategy only sees this interface, so the inline runner and a worker pool are
interchangeable. Both hand jobs with one batch key (same attack and configuration,
updates the attack can stack: :meth:`~fedleak.attacks.Attack.batch_key`) to
:func:`execute_batch` together, up to ``runner.max_batch`` at a time.
"""

from __future__ import annotations

import logging
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import torch

from fedleak.attacks import ATTACKS, Attack, AttackConfig, AttackNotApplicable, AttackStatus, Budget, Reconstruction
from fedleak.attacks.base import Deadline
from fedleak.attacks.devices import ieee_float32
from fedleak.core.config import RunnerConfig
from fedleak.core.errors import first_line
from fedleak.core.registry import Registry
from fedleak.core.updates import ClientUpdate
from fedleak.models import ModelSpec


@dataclass(frozen=True)
class AttackJob:
    """One attack against one captured update, with what the server knows of the model."""

    update: ClientUpdate
    attack: str
    config: AttackConfig
    model: ModelSpec

    def batch_key(self, attack_class: type[Attack]) -> Hashable | None:
        """Jobs with equal keys may run as one batch; ``None``: this job runs alone."""
        key = attack_class.batch_key(self.update)
        return None if key is None else (self.attack, self.config.model_dump_json(), key)


@dataclass(frozen=True)
class AttackOutcome:
    """How one job ended: a reconstruction (``ok``), or the reason it has none."""

    job: AttackJob
    reconstruction: Reconstruction | None
    error: str | None
    seconds: float
    """This job's share of the batch that produced the outcome: its wall time / its size."""
    status: AttackStatus = AttackStatus.OK
    batch_seconds: float | None = None
    """The wall time of that batch (``None``: the job never ran)."""
    batch_size: int = 1

    @classmethod
    def unfinished(cls, job: AttackJob, error: str, status: AttackStatus = AttackStatus.FAILED,
                   seconds: float = 0.0) -> AttackOutcome:
        """An outcome without a reconstruction (failed, cancelled, not applicable)."""
        return cls(job, None, error, seconds, status)

    def without_job(self) -> dict[str, Any]:
        """Everything but the job, as a worker sends it back (the dispatcher has the job)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "job"}


OutcomeCallback = Callable[[AttackOutcome], None]
_log = logging.getLogger(__name__)


def execute(job: AttackJob, attack_class: type[Attack] | None = None) -> AttackOutcome:
    """Run one job to an outcome; any failure becomes ``error`` (one line).

    ``attack_class`` defaults to the registry's entry for ``job.attack``; a worker process
    is handed the class looked up where the job was submitted, so attacks registered
    there at run time (a plugin, a test) run on workers too.
    """
    return execute_batch([job], attack_class)[0]


def execute_batch(jobs: Sequence[AttackJob], attack_class: type[Attack] | None = None,
                  deadline: Deadline | None = None) -> list[AttackOutcome]:
    """Run jobs of one batch key as one :meth:`~fedleak.attacks.Attack.run_batch`.

    If a batch fails, its halves run on their own, down to single jobs, all within the
    first attempt's ``deadline`` (the attack's ``time_budget_s`` counted once, as a
    worker's hard limit is): a failure is reported only for the jobs it belongs to, and a
    batch too large for the GPU's memory is split until it fits. Each reconstruction is
    checked against the attack contract (:meth:`Reconstruction.violation`). Attacks compute in
    IEEE float32 on every device (:func:`~fedleak.attacks.devices.ieee_float32`).
    """
    first = jobs[0]
    deadline = deadline or Budget(first.config.time_budget_s).deadline()
    started = time.perf_counter()
    try:
        attack = (attack_class or ATTACKS.get(first.attack))(first.config)
        model = first.model.with_weights(first.update.global_weights)
        with ieee_float32():  # no TF32 on a GPU: the same arithmetic as on the CPU (fedleak.attacks.devices)
            reconstructions = attack.run_batch([job.update for job in jobs], model, deadline.remaining())
        if len(reconstructions) != len(jobs):
            raise RuntimeError(f"run_batch returned {len(reconstructions)} reconstructions for {len(jobs)} updates")
    except Exception as failure:  # noqa: BLE001 - an attack's crash must not stop the federation
        if isinstance(failure, torch.OutOfMemoryError):
            torch.cuda.empty_cache()  # give back what the failed attempt cached, for the halves or the next job
        if len(jobs) == 1:
            status = AttackStatus.NOT_APPLICABLE if isinstance(failure, AttackNotApplicable) else AttackStatus.FAILED
            return [AttackOutcome.unfinished(first, _describe(failure), status, time.perf_counter() - started)]
        _log.warning("a batch of %d %s attacks failed (%s); running it in halves",
                     len(jobs), first.attack, _describe(failure))
        half = len(jobs) // 2
        return [*execute_batch(jobs[:half], attack_class, deadline),
                *execute_batch(jobs[half:], attack_class, deadline)]
    seconds = time.perf_counter() - started
    return [_checked(job, reconstruction, seconds, len(jobs)) for job, reconstruction in zip(jobs, reconstructions)]


def _checked(job: AttackJob, reconstruction: Reconstruction, batch_seconds: float, size: int) -> AttackOutcome:
    share = batch_seconds / size
    violation = reconstruction.violation(job.model.image_shape, job.model.num_classes)
    if violation is not None:
        return AttackOutcome(job, None, f"broke the attack contract: {violation}", share, AttackStatus.FAILED,
                             batch_seconds, size)
    return AttackOutcome(job, reconstruction, None, share, AttackStatus.OK, batch_seconds, size)


def report(on_done: OutcomeCallback, outcome: AttackOutcome) -> None:
    """Hand ``outcome`` to its callback; a failure there is logged, never raised (a runner
    goes on with the other outcomes)."""
    try:
        on_done(outcome)
    except Exception:  # noqa: BLE001 - e.g. the store is gone: the other outcomes still count
        _log.exception("reporting the outcome of %s failed", outcome.job.attack)


def batches(jobs: Sequence[AttackJob], max_batch: int) -> list[list[AttackJob]]:
    """``jobs`` grouped by batch key, in order of first appearance, at most ``max_batch`` each."""
    groups: dict[Hashable, list[list[AttackJob]]] = {}
    for index, job in enumerate(jobs):
        key = job.batch_key(ATTACKS.get(job.attack))
        runs = groups.setdefault(("alone", index) if key is None else key, [[]])
        if len(runs[-1]) == max_batch:
            runs.append([])
        runs[-1].append(job)
    return [batch for runs in groups.values() for batch in runs]


def _describe(failure: Exception) -> str:
    if isinstance(failure, AttackNotApplicable):
        return first_line(failure)
    if isinstance(failure, torch.OutOfMemoryError):
        return f"out of GPU memory: {first_line(failure)}"
    frame = traceback.extract_tb(failure.__traceback__)[-1]
    return f"{type(failure).__name__}: {first_line(failure)} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"


class AttackRunner(ABC):
    @abstractmethod
    def submit(self, jobs: Sequence[AttackJob], on_done: OutcomeCallback) -> None:
        """Start ``jobs``; ``on_done`` receives each outcome (maybe later, maybe elsewhere).

        Submitting a round's jobs in one call lets the runner batch them."""

    def close(self, wait: bool = True) -> None:  # noqa: B027 (optional hook, not abstract)
        """Finish (``wait``) or abandon pending jobs; the default has none pending."""


class RunnerFactory(Protocol):
    """A registered runner: its ``Config`` and a constructor from it."""

    Config: type[RunnerConfig]

    def __call__(self, config: Any) -> AttackRunner: ...


RUNNERS: Registry[RunnerFactory] = Registry("runner")
"""Attack runners by name (``inline``, ``ray``, and plugins' ``fedleak.runners``)."""
