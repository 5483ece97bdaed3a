"""The Ray runner: attacks run on a pool of worker actors, beside the federation.

``submit`` only queues the job and returns, so a round never waits for its attacks
(unless the queue is full and the backpressure policy is ``block``). A dispatcher
thread hands queued jobs to idle workers, collects finished ones as they complete and
passes each outcome to its callback (the adversary scores and stores it there, so
results stream into the store in completion order).

Failure isolation: an attack's exception becomes a failed outcome inside the worker
(:func:`~fedleak.runner.base.execute`). A worker that dies (a segfault, ``os._exit``,
the OOM killer) or is still busy ``grace_s`` after its attack's ``time_budget_s`` is
killed if need be, its job is reported failed with the reason, and a fresh worker
takes its place. Nothing a worker did is stored until its outcome arrives here.

The Ray instance is the one already running in this process (Flower's simulation
engine starts one), else the cluster at ``address`` (a deployment), else a new local one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import ray

from fedleak.attacks import ATTACKS, Attack
from fedleak.config import RunnerConfig
from fedleak.runner.base import AttackJob, AttackOutcome, AttackRunner, OutcomeCallback, execute

_log = logging.getLogger(__name__)
_CANCELLED = "cancelled: the run ended before the attack finished"
_POLL_S = 0.05
"""How often the dispatcher looks for finished attacks and expired deadlines."""


@ray.remote
class AttackWorker:
    """One attack at a time, in its own process (and on its share of a GPU)."""

    def run(self, job: AttackJob, attack_class: type[Attack]) -> AttackOutcome:
        return execute(job, attack_class)


@dataclass(frozen=True)
class _Queued:
    job: AttackJob
    attack_class: type[Attack]
    on_done: OutcomeCallback


@dataclass
class _Running:
    job: AttackJob
    on_done: OutcomeCallback
    worker: ray.actor.ActorHandle
    started: float


class RayRunner(AttackRunner):
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self._idle: list[ray.actor.ActorHandle] = []
        self._queue: deque[_Queued] = deque()
        self._running: dict[ray.ObjectRef, _Running] = {}
        self._reporting = 0
        """Outcomes taken off ``_running`` whose callback has not returned yet (close waits for them)."""
        self._changed = threading.Condition()
        self._stopping = False
        """close() has begun (or the dispatcher failed): new submissions are refused with ``_stop_reason``."""
        self._stop_reason = _CANCELLED
        self._closing = False
        """Everything is reported: the dispatcher exits."""
        self._dispatcher: threading.Thread | None = None
        self._options: dict[str, float] = {}

    def _start(self) -> None:
        """Join Ray and start the workers, at the first submission: in a simulation the
        ServerApp starts before Flower's engine has started Ray, and two ``ray.init`` race."""
        if not ray.is_initialized():
            ray.init(address=self.config.address, include_dashboard=False, log_to_driver=False)
        self._options = {"num_cpus": self.config.num_cpus, "num_gpus": _gpus_per_worker(self.config)}
        self._idle = [self._new_worker() for _ in range(self.config.workers)]
        self._dispatcher = threading.Thread(target=self._dispatch, name="fedleak-attacks", daemon=True)
        self._dispatcher.start()

    def submit(self, job: AttackJob, on_done: OutcomeCallback) -> None:
        """Queue ``job``; with a full queue, wait for room (``block``) or report it rejected."""
        attack_class = ATTACKS.get(job.attack)  # an unknown name fails here, in the caller
        refusal = None
        with self._changed:
            if self._dispatcher is None and not self._stopping:
                self._start()
            if len(self._queue) >= self.config.max_pending and self.config.backpressure == "reject":
                refusal = (f"rejected: {self.config.max_pending} attacks already queued "
                           "(runner.backpressure = 'reject')")
            else:
                self._changed.wait_for(lambda: self._stopping or len(self._queue) < self.config.max_pending)
                if self._stopping:
                    refusal = self._stop_reason
                else:
                    self._queue.append(_Queued(job, attack_class, on_done))
                    self._changed.notify_all()
        if refusal:
            on_done(AttackOutcome(job, None, refusal, 0.0))

    def close(self, wait: bool = True) -> None:
        """Drain every submitted attack (``wait``), or report the queued and running ones cancelled."""
        cancelled: list[tuple[AttackJob, OutcomeCallback]] = []
        with self._changed:
            self._stopping = True
            if not wait:
                cancelled = [*((q.job, q.on_done) for q in self._queue),
                             *((r.job, r.on_done) for r in self._running.values())]
                for running in self._running.values():
                    ray.kill(running.worker)
                self._queue.clear()
                self._running.clear()
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._queue and not self._running and not self._reporting)
            self._closing = True
        if self._dispatcher is not None:
            self._dispatcher.join()
        for worker in self._idle:
            ray.kill(worker)
        for job, on_done in cancelled:
            on_done(AttackOutcome(job, None, _CANCELLED, 0.0))

    def _new_worker(self) -> ray.actor.ActorHandle:
        return AttackWorker.options(**self._options).remote()

    def _dispatch(self) -> None:
        try:
            while not self._closing:
                self._step()
        except Exception as error:  # noqa: BLE001 - e.g. Ray shut down under us: fail the jobs, never hang
            _log.exception("the attack dispatcher stopped")
            self._abandon(f"runner failed: {type(error).__name__}: {_first_line(error)}")

    def _step(self) -> None:
        with self._changed:
            self._start_queued()
            refs = list(self._running)
        if not refs:
            time.sleep(_POLL_S)
            return
        for ref in ray.wait(refs, num_returns=len(refs), timeout=_POLL_S)[0]:
            self._finish(ref)
        self._expire()

    def _abandon(self, reason: str) -> None:
        """Report every queued and running job failed with ``reason``; later submissions too."""
        with self._changed:
            self._stopping, self._stop_reason = True, reason
            left = [*((q.job, q.on_done) for q in self._queue), *((r.job, r.on_done) for r in self._running.values())]
            self._queue.clear()
            self._running.clear()
            self._changed.notify_all()
        for job, on_done in left:
            on_done(AttackOutcome(job, None, reason, 0.0))

    def _start_queued(self) -> None:
        while self._queue and self._idle:
            queued = self._queue.popleft()
            worker = self._idle.pop()
            ref = worker.run.remote(queued.job, queued.attack_class)
            self._running[ref] = _Running(queued.job, queued.on_done, worker, time.perf_counter())
        self._changed.notify_all()

    def _take(self, ref: ray.ObjectRef) -> _Running | None:
        """Remove a job from ``_running`` to report it (``None``: close(wait=False) cancelled it)."""
        with self._changed:
            running = self._running.pop(ref, None)
            self._reporting += running is not None
            return running

    def _report(self, running: _Running, outcome: AttackOutcome, worker: ray.actor.ActorHandle) -> None:
        """Give the worker back, then hand the outcome to its callback (the adversary stores it)."""
        with self._changed:
            self._idle.append(worker)
            self._changed.notify_all()
        try:
            running.on_done(outcome)
        except Exception:  # noqa: BLE001 - a failure to store one outcome must not stop the dispatcher
            _log.exception("storing the outcome of %s failed", running.job.attack)
        finally:
            with self._changed:
                self._reporting -= 1
                self._changed.notify_all()

    def _finish(self, ref: ray.ObjectRef) -> None:
        running = self._take(ref)
        if running is None:
            return
        worker = running.worker
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            outcome = self._failed(running, f"worker died: {_first_line(error)}")
            worker = self._new_worker()
        except ray.exceptions.RayError as error:  # e.g. the job or its outcome could not be (de)serialised
            outcome = self._failed(running, f"{type(error).__name__}: {_first_line(error)}")
        self._report(running, outcome, worker)

    def _expire(self) -> None:
        """Kill workers whose attack overran its ``time_budget_s`` by more than ``grace_s``; replace them."""
        now = time.perf_counter()
        with self._changed:
            overdue = [ref for ref, r in self._running.items() if _overdue(r, now, self.config.grace_s)]
        for ref in overdue:
            running = self._take(ref)
            if running is None:
                continue
            ray.kill(running.worker)
            budget = running.job.config.time_budget_s
            outcome = self._failed(running, f"timed out: still running {self.config.grace_s:g} s after its "
                                            f"time budget of {budget:g} s; worker replaced")
            self._report(running, outcome, self._new_worker())

    @staticmethod
    def _failed(running: _Running, error: str) -> AttackOutcome:
        return AttackOutcome(running.job, None, error, time.perf_counter() - running.started)


def _overdue(running: _Running, now: float, grace_s: float) -> bool:
    budget = running.job.config.time_budget_s
    return budget is not None and now - running.started > budget + grace_s


def _gpus_per_worker(config: RunnerConfig) -> float:
    """The configured share, or the cluster's GPUs split evenly over the workers (0: CPU fallback)."""
    if config.num_gpus is not None:
        return config.num_gpus
    return min(1.0, ray.cluster_resources().get("GPU", 0.0) / config.workers)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
