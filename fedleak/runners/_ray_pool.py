"""The Ray runner: attacks run on a pool of worker actors, beside the federation.

``submit`` only queues the jobs and returns, so a round never waits for its attacks
(unless the queue is full and the backpressure policy is ``block``). A dispatcher
thread hands each idle worker the oldest queued job together with the queued jobs of
its batch key (up to ``max_batch``: one vectorised optimisation, see
:func:`~fedleak.runners.base.execute_batch`), collects finished batches as they
complete and passes each outcome to its callback (the adversary scores and stores it
there, so results stream into the store in completion order).

Failure isolation: an attack's exception becomes a failed outcome inside the worker
(:func:`~fedleak.runners.base.execute`). A worker that dies (a segfault, ``os._exit``,
the OOM killer) or is still busy ``grace_s`` after its attack's ``time_budget_s`` is
killed if need be, its jobs are reported failed with the reason, and a fresh worker
takes its place. Nothing a worker did is stored until its outcome arrives here.

The Ray instance is the one already running in this process (Flower's simulation
engine starts one), else the cluster at ``address`` (a deployment), else a new local one
bound to 127.0.0.1 (:func:`~fedleak.runners.ray_config.start_local_ray`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from fedleak.attacks import ATTACKS, Attack, AttackStatus
from fedleak.core.errors import first_line
from fedleak.core.fingerprint import code_fingerprint, code_mismatch
from fedleak.runners.base import AttackJob, AttackOutcome, AttackRunner, OutcomeCallback, execute_batch, report
from fedleak.runners.ray_config import RayRunnerConfig, start_local_ray

_log = logging.getLogger(__name__)
_CANCELLED = "cancelled: the run ended before the attack finished"
_POLL_S = 0.05
"""How often the dispatcher looks for finished attacks and expired deadlines."""


_Result = dict[str, Any]
"""An :class:`AttackOutcome` less its job (:meth:`AttackOutcome.without_job`), as a worker returns it."""


@ray.remote
class AttackWorker:
    """One batch of attacks at a time, in its own process (and on its share of a GPU)."""

    def run(self, jobs: list[AttackJob], attack_class: type[Attack], server_code: str) -> list[_Result]:
        """Each job's outcome without the job: the dispatcher has it, and sending its
        weights back would double what crosses the process boundary. A worker running other
        fedleak code than the server (``server_code``, :mod:`fedleak.core.fingerprint`) fails them all."""
        mismatch = code_mismatch(server_code, "this attack worker")
        if mismatch:
            return [AttackOutcome.unfinished(job, mismatch).without_job() for job in jobs]
        return [outcome.without_job() for outcome in execute_batch(jobs, attack_class)]


@dataclass(frozen=True)
class _Queued:
    job: AttackJob
    attack_class: type[Attack]
    on_done: OutcomeCallback
    key: Hashable | None


@dataclass
class _Running:
    batch: list[_Queued]
    worker: ray.actor.ActorHandle
    started: float

    @property
    def time_budget_s(self) -> float | None:
        return self.batch[0].job.config.time_budget_s  # one batch key: one configuration


class RayPool(AttackRunner):
    def __init__(self, config: RayRunnerConfig) -> None:
        self.config = config
        self._idle: list[ray.actor.ActorHandle] = []
        self._queue: deque[_Queued] = deque()
        self._running: dict[ray.ObjectRef, _Running] = {}
        self._reporting = 0
        """Batches taken off ``_running`` whose callbacks have not returned yet (close waits for them)."""
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
        if self.config.address and not ray.is_initialized():
            ray.init(address=self.config.address, include_dashboard=False, log_to_driver=False)
        start_local_ray(log_to_driver=False)  # (nothing if in a Ray already)
        self._options = {"num_cpus": self.config.num_cpus, "num_gpus": _gpus_per_worker(self.config)}
        self._idle = [self._new_worker() for _ in range(self.config.workers)]
        self._dispatcher = threading.Thread(target=self._dispatch, name="fedleak-attacks", daemon=True)
        self._dispatcher.start()

    def _start_or_refuse(self) -> None:
        """Start (holding ``_changed``); if Ray cannot be joined, refuse every job with the reason."""
        try:
            self._start()
        except Exception as error:  # noqa: BLE001 - e.g. no cluster at runner.address: the federation goes on
            _log.exception("the attack pool could not start")
            where = f" at {self.config.address}" if self.config.address else ""
            self._stopping = True
            self._stop_reason = f"runner failed: could not start the Ray pool{where}: {first_line(error)}"

    def submit(self, jobs: Sequence[AttackJob], on_done: OutcomeCallback) -> None:
        """Queue ``jobs``; with a full queue, wait for room (``block``) or report a job rejected."""
        queued = [_Queued(job, cls, on_done, job.batch_key(cls))  # an unknown name fails here, in the caller
                  for job, cls in ((job, ATTACKS.get(job.attack)) for job in jobs)]
        refused = []
        with self._changed:
            if self._dispatcher is None and not self._stopping and queued:
                self._start_or_refuse()
            for item in queued:
                refusal = self._enqueue(item)
                if refusal:
                    refused.append((item.job, refusal))
        for job, refusal in refused:
            report(on_done, AttackOutcome.unfinished(job, refusal, _status(refusal)))

    def _enqueue(self, item: _Queued) -> str | None:
        """Append ``item`` (holding ``_changed``); the reason when it is refused instead."""
        if len(self._queue) >= self.config.max_pending and self.config.backpressure == "reject":
            return f"rejected: {self.config.max_pending} attacks already queued (runner.backpressure = 'reject')"
        self._changed.wait_for(lambda: self._stopping or len(self._queue) < self.config.max_pending)
        if self._stopping:
            return self._stop_reason
        self._queue.append(item)
        self._changed.notify_all()
        return None

    def close(self, wait: bool = True) -> None:
        """Drain every submitted attack (``wait``), or report the queued and running ones cancelled."""
        cancelled: list[_Queued] = []
        with self._changed:
            self._stopping = True
            if not wait:
                cancelled = [*self._queue, *(q for r in self._running.values() for q in r.batch)]
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
        for item in cancelled:
            report(item.on_done, AttackOutcome.unfinished(item.job, _CANCELLED, AttackStatus.CANCELLED))

    def _new_worker(self) -> ray.actor.ActorHandle:
        handle: ray.actor.ActorHandle = AttackWorker.options(**self._options).remote()  # type: ignore[attr-defined]
        return handle  # (@ray.remote makes the class an ActorClass, which mypy cannot see)

    def _dispatch(self) -> None:
        try:
            while not self._closing:
                self._step()
        except Exception as error:  # noqa: BLE001 - e.g. Ray shut down under us: fail the jobs, never hang
            _log.exception("the attack dispatcher stopped")
            self._abandon(f"runner failed: {type(error).__name__}: {first_line(error)}")

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
            left = [*self._queue, *(q for r in self._running.values() for q in r.batch)]
            self._queue.clear()
            self._running.clear()
            self._changed.notify_all()
        for item in left:
            report(item.on_done, AttackOutcome.unfinished(item.job, reason))

    def _start_queued(self) -> None:
        while self._queue and self._idle:
            batch = self._next_batch()
            worker = self._idle.pop()
            ref: ray.ObjectRef = worker.run.remote([q.job for q in batch], batch[0].attack_class, code_fingerprint())
            self._running[ref] = _Running(batch, worker, time.perf_counter())
        self._changed.notify_all()

    def _next_batch(self) -> list[_Queued]:
        """The oldest queued job and the queued jobs of its batch key, up to ``max_batch``."""
        first = self._queue.popleft()
        batch = [first]
        if first.key is not None:
            for item in list(self._queue):
                if len(batch) == self.config.max_batch:
                    break
                if item.key == first.key:
                    batch.append(item)
                    self._queue.remove(item)
        return batch

    def _take(self, ref: ray.ObjectRef) -> _Running | None:
        """Remove a batch from ``_running`` to report it (``None``: close(wait=False) cancelled it)."""
        with self._changed:
            running = self._running.pop(ref, None)
            self._reporting += running is not None
            return running

    def _report(self, running: _Running, outcomes: list[AttackOutcome], worker: ray.actor.ActorHandle) -> None:
        """Give the worker back, then hand each outcome to its callback (the adversary stores it)."""
        with self._changed:
            self._idle.append(worker)
            self._changed.notify_all()
        try:
            for item, outcome in zip(running.batch, outcomes):
                report(item.on_done, outcome)
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
            outcomes = [AttackOutcome(job=item.job, **result) for item, result in zip(running.batch, ray.get(ref))]
        except ray.exceptions.RayActorError as error:
            outcomes = self._failed(running, f"worker died: {first_line(error)}")
            worker = self._new_worker()
        except ray.exceptions.RayError as error:  # e.g. the jobs or their outcomes could not be (de)serialised
            outcomes = self._failed(running, f"{type(error).__name__}: {first_line(error)}")
        self._report(running, outcomes, worker)

    def _expire(self) -> None:
        """Kill workers whose batch overran its ``time_budget_s`` by more than ``grace_s``; replace them."""
        now = time.perf_counter()
        with self._changed:
            overdue = [ref for ref, r in self._running.items() if _overdue(r, now, self.config.grace_s)]
        for ref in overdue:
            running = self._take(ref)
            if running is None:
                continue
            ray.kill(running.worker)
            outcomes = self._failed(running, f"timed out: still running {self.config.grace_s:g} s after its "
                                             f"time budget of {running.time_budget_s:g} s; worker replaced")
            self._report(running, outcomes, self._new_worker())

    @staticmethod
    def _failed(running: _Running, error: str) -> list[AttackOutcome]:
        seconds = (time.perf_counter() - running.started) / len(running.batch)
        return [AttackOutcome.unfinished(item.job, error, seconds=seconds) for item in running.batch]


def _status(refusal: str) -> AttackStatus:
    """A job refused at submission: cancelled when the run was ending, else failed."""
    return AttackStatus.CANCELLED if refusal == _CANCELLED else AttackStatus.FAILED


def _overdue(running: _Running, now: float, grace_s: float) -> bool:
    budget = running.time_budget_s
    return budget is not None and now - running.started > budget + grace_s


def _gpus_per_worker(config: RayRunnerConfig) -> float:
    """The configured share, or the cluster's GPUs split evenly over the workers (0: CPU fallback)."""
    if config.num_gpus is not None:
        return config.num_gpus
    return min(1.0, float(ray.cluster_resources().get("GPU", 0.0)) / config.workers)

