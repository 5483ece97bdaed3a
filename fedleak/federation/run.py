"""One run's server side, shared by the Message API and the legacy (SecAgg+) paths.

Flower-free: :class:`ServerRun` holds the store, the adversary and the utility metric,
so both paths import it and neither imports the other. It also owns the run's ending:
``finished``, ``failed`` or ``interrupted`` is stored once, by whichever comes first —
the server thread, or a signal's watchdog (:mod:`fedleak.federation.interrupts`) when the
server thread is stuck waiting for a round.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fedleak.adversary.adversary import Adversary
from fedleak.adversary.assembly import open_adversary
from fedleak.adversary.audit import stored_audit
from fedleak.adversary.progress import Progress
from fedleak.client.training import evaluate
from fedleak.core.digests import weights_digest
from fedleak.core.stopping import STOP
from fedleak.core.timing import PHASES
from fedleak.core.updates import Weights
from fedleak.data import DataPlan, ImageDataset, build_plan, load_dataset
from fedleak.results.checkpoint import read_checkpoint, write_checkpoint
from fedleak.results.lock import DirectoryLock
from fedleak.results.rows import RunStatus
from fedleak.results.store import ResultStore
from fedleak.scenario import Scenario

_log = logging.getLogger(__name__)


def num_sampled_clients(scenario: Scenario) -> int:
    """How many clients FedAvg samples per round (all are available: min_available = all)."""
    return max(int(scenario.partition.num_clients * scenario.federation.fraction_train), 1)


def end_run(adversary: Adversary, lock: DirectoryLock, run_id: str, status: RunStatus,
            error: str | None = None) -> None:
    """Store that the run ended as ``status``: the attack runner stopped, attacks still queued
    or running stored as cancelled; then the store is closed and the run directory released."""
    try:
        try:
            adversary.runner.close(wait=False)
        except Exception:  # noqa: BLE001 - e.g. Ray already gone after Ctrl-C: the status must still be stored
            _log.exception("closing the attack runner failed")
        adversary.cancel_pending(f"cancelled: the run ended ({status}) before the attack finished")
        adversary.store.finish_run(run_id, status, error)
    finally:
        adversary.store.close()
        lock.release()


@dataclass
class ServerRun:
    """One run's server side: its adversary (which holds the store, the runner and the attacks'
    model of the client), the data plan replies are checked against, how utility is measured."""

    scenario: Scenario
    run_dir: Path
    adversary: Adversary
    plan: DataPlan
    """The data plan: what each client's reply must declare (the adversary scores against the same plan)."""
    test: ImageDataset
    progress: Progress
    lock: DirectoryLock
    start_weights: Weights
    last_round: int = 0
    """The last completed round (evaluated and checkpointed); a resumed run starts after it."""
    resumed_from: int | None = None
    _ending: threading.Lock = field(default_factory=threading.Lock)
    _ended: bool = False

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @classmethod
    def open(cls, scenario: Scenario, run_dir: Path, progress: Progress, resume: bool = False) -> ServerRun:
        """Start a run in the new directory ``run_dir``, or (``resume``) continue the stopped
        run stored there after its last completed round.

        Raises:
            FedleakError: another process is writing the run.
        """
        lock = DirectoryLock(run_dir, "the run is still running (another fedleak process holds it)").acquire()
        try:
            with PHASES.measure("server start (data, model audit)"):
                run = cls._open(scenario, run_dir, progress, lock, resume)
            PHASES.mark("round")  # the first round to run (after a resume too) starts here
            return run
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _open(cls, scenario: Scenario, run_dir: Path, progress: Progress, lock: DirectoryLock,
              resume: bool) -> ServerRun:
        splits = load_dataset(scenario.dataset)
        plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
        store, run_id = ResultStore(run_dir), run_dir.name
        initial = scenario.model_spec(splits).build(seed=scenario.seed)
        checkpoint = read_checkpoint(run_dir) if resume else None
        last_round = checkpoint[0] if checkpoint else 0
        if resume:
            store.reopen_run(run_id, last_round)
        else:
            store.start_run(run_id, scenario.name, scenario.to_toml())
            # The architecture's risk at the initial weights: data-free, and cheap next to a round.
            store.record_data_plan(run_id, {**plan.fingerprint(scenario.training), "pool": splits.train.digest(),
                                            "initial_model": weights_digest(initial.state_dict())})
            store.record_audit(run_id, *stored_audit(initial, probe_seed=scenario.seed))
        adversary = open_adversary(scenario, store, progress)
        test = splits.test.subset(slice(scenario.federation.test_samples))
        run = cls(scenario, run_dir, adversary, plan, test, progress, lock,
                  checkpoint[1] if checkpoint else initial.state_dict())
        if resume:
            run.last_round = run.resumed_from = last_round
            adversary.resume(last_round)
        STOP.on_force(run.interrupt)
        return run

    @property
    def remaining_rounds(self) -> int:
        return self.scenario.federation.rounds - self.last_round

    def initial_weights(self) -> Weights:
        """The weights the first round to run starts from: the initial model, or a resumed run's checkpoint."""
        return self.start_weights

    def evaluate_round(self, server_round: int, weights: Weights) -> tuple[float, float]:
        """The global model's test accuracy and loss (the utility side of a defense), stored
        with the worst client's ε so far; then the model is checkpointed: the round is complete."""
        accuracy, loss = evaluate(self.adversary.model.with_weights(weights), self.test)
        self.adversary.store.record_round(self.run_id, server_round, accuracy, loss, self.adversary.ledger.worst())
        write_checkpoint(self.run_dir, server_round, weights)
        self.last_round = server_round
        if server_round > 0:
            PHASES.since("round", "rounds (training, capture, inline attacks, evaluation)")
            PHASES.mark("round")
            self.progress.round_evaluated(server_round, accuracy)
        return accuracy, loss

    def stored_round(self, server_round: int) -> tuple[float, float]:
        """A completed round's stored accuracy and loss (a resumed run does not evaluate it again)."""
        return self.adversary.store.stored_round(server_round)

    def finish(self, status: RunStatus, error: str | None = None) -> bool:
        """End the run as ``status`` (once: later calls do nothing and return False); attacks
        still queued or running are stored as cancelled."""
        with self._ending:
            if self._ended:
                return False
            self._ended = True
        try:
            with PHASES.measure("server end (remaining attacks, store closed)"):
                end_run(self.adversary, self.lock, self.run_id, status, error)
        finally:
            STOP.forget(self.interrupt)
            PHASES.mark("server finished")
        return True

    def interrupt(self, reason: str) -> None:
        """End the run as ``interrupted``, saying where a resume would continue."""
        rounds = self.scenario.federation.rounds
        with self._ending:
            ended = self._ended
        if not ended:  # said before the run is released: the process may exit right after
            self.progress.interrupted(self.run_dir, self.last_round, rounds)
        self.finish(RunStatus.INTERRUPTED, f"{reason} after round {self.last_round} of {rounds}")
