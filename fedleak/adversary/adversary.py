"""The adversary: capture → attack (→ :mod:`fedleak.adversary.outcomes`: score → store).

It knows nothing of how updates arrive (Flower's Message API strategy, or the legacy
path SecAgg+ needs): whatever captures replies turns each into a
:class:`~fedleak.core.updates.ClientUpdate` and calls :meth:`Adversary.observe_round`
(one round's individual updates) or :meth:`Adversary.observe` (one more, e.g. an
aggregate). It also keeps the privacy ledger, since it sees every participation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

from fedleak.adversary.ground_truth import GroundTruth
from fedleak.adversary.outcomes import OutcomeRecorder
from fedleak.adversary.privacy import PrivacyLedger
from fedleak.adversary.progress import Progress
from fedleak.adversary.sanity import SanityVerdict, check_update
from fedleak.attacks import ATTACKS
from fedleak.core.errors import first_line
from fedleak.core.stopping import STOP
from fedleak.core.updates import ClientUpdate, Weights
from fedleak.crafting import CRAFTINGS, Crafting, CraftRequest
from fedleak.crafting.visibility import layer_visibility
from fedleak.defenses import LocalRound
from fedleak.models import ModelSpec
from fedleak.results.captures import CaptureStore
from fedleak.results.rows import NO_EPSILON, AttackStatus, Epsilon, RejectedReply
from fedleak.results.store import ResultStore
from fedleak.runners import AttackJob, AttackOutcome, AttackRunner
from fedleak.scenario import Scenario

_log = logging.getLogger(__name__)


class Adversary:
    """One run's adversarial server: what it sends, which replies it keeps and attacks, the privacy
    ledger of every participation, the sanity check of lab updates, resuming a stopped run's attacks.
    Outcomes go to :attr:`outcomes`. Built by :func:`fedleak.adversary.assembly.open_adversary`."""

    def __init__(
        self,
        scenario: Scenario,
        model: ModelSpec,
        truth: GroundTruth,
        store: ResultStore,
        runner: AttackRunner,
        progress: Progress | None = None,
        variant: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.truth = truth
        """What reconstructions are scored against: the data plan, or the samples lab clients reported."""
        self.store = store
        self.runner = runner
        self.progress = progress or Progress()
        self.ledger = PrivacyLedger(scenario.defense_pipeline(), scenario.accounting.delta)
        self.captures = CaptureStore(store.directory)
        self.outcomes = OutcomeRecorder(scenario, truth, store, self.progress, variant)
        """Scores and stores what the runner returns (``variant``: an offline re-attack's label, stored with
        each result); it holds the ε of each update the ledger accounted."""
        self._pending: dict[int, AttackJob] = {}
        """Jobs submitted and not yet stored, by identity (the runner reports the job it was given)."""
        self._pending_lock = threading.Lock()
        self._carried: list[AttackJob] = []
        """A resumed run's unfinished attacks, submitted with the next round's (or at the end)."""
        self.crafting: Crafting | None = None if scenario.crafting is None else \
            CRAFTINGS.get(scenario.crafting.name)(scenario.crafting.config)  # type: ignore[arg-type]
        """What a malicious server sends in its malicious rounds (``None``: the global model in every round)."""
        self._initial: Weights | None = None
        """The architecture's initialisation, drawn when a crafted round is first recorded."""

    def crafted_in(self, server_round: int) -> str | None:
        """The name of the crafting the server sends in ``server_round``; ``None``: it sends the
        global model (the scenario allows a crafting only for a malicious server)."""
        component = self.scenario.crafting
        if component is None or self.crafting is None or not self.crafting.crafts(server_round):
            return None
        return component.name

    def crafts_per_client(self, server_round: int) -> bool:
        """Whether each client gets its own weights in ``server_round`` (:meth:`weights_to_send` per node)."""
        return self.crafted_in(server_round) is not None and self.crafting is not None and self.crafting.per_client

    def weights_to_send(self, server_round: int, global_weights: Weights, node_id: int | None = None) -> Weights:
        """The global model, or in a malicious round the crafted weights (for ``node_id``, which a
        crafting that crafts per client needs: :meth:`crafts_per_client`)."""
        if self.crafting is None or self.crafted_in(server_round) is None:
            return global_weights
        if self.crafting.per_client and node_id is None:
            raise ValueError(f"round {server_round}: a per-client crafting needs the node it crafts for")
        seed = self.scenario.seed * 1_000_003 + server_round  # fresh per round, reproducible per run
        request = CraftRequest(server_round, seed, node_id if self.crafting.per_client else None)
        return self.crafting.craft(self.model, global_weights, request)

    def record_crafted(self, run_id: str, server_round: int, node_id: int | None, previous: Weights,
                       sent: Weights) -> None:
        """Store what an honest client could notice in the crafted weights ``sent`` in place of
        ``previous`` (:mod:`fedleak.crafting.visibility`), against the architecture's own initialisation;
        nothing in a round that sends the global model."""
        crafted = self.crafted_in(server_round)
        if crafted is None:
            return
        if self._initial is None:
            self._initial = self.model.build(seed=self.scenario.seed).state_dict()
        self.store.record_crafted(run_id, server_round, node_id, crafted, layer_visibility(sent, previous,
                                                                                           self._initial))

    def wants(self, update: ClientUpdate) -> bool:
        partition = None if update.aggregate_of else update.partition_id
        return self.scenario.capture.selects(update.server_round, partition)

    def observe_round(self, updates: list[ClientUpdate], num_rounds: int,
                      rejected: Sequence[RejectedReply] = ()) -> None:
        """Observe one round's accepted updates (and store the replies that were not), reporting
        how many the capture policy selects.

        The round's rows are one transaction and its kept updates one file; its attacks are
        submitted together, so the runner can batch them."""
        updates = [self._flagged(update) for update in updates]
        verdicts = [self.sanity_check(update) for update in updates]
        with self.store.transaction():
            for reply in rejected:
                self.store.record_rejection(reply)
            jobs = [job for update, verdict in zip(updates, verdicts, strict=True)
                    for job in self.record_and_plan_attacks(update, verdict)]
            self._keep(updates)
        if updates or rejected:
            server_round = (updates[0] if updates else rejected[0]).server_round
            attacked = sum(self.wants(update) for update in updates)
            self.progress.round_captured(server_round, num_rounds, len(updates), attacked, list(rejected))
        for update, verdict in zip(updates, verdicts, strict=True):
            if verdict is not None:
                self.progress.update_checked(update.partition_id, verdict)
        self.submit(jobs)

    def observe(self, update: ClientUpdate) -> None:
        """Observe one more update (e.g. an aggregate) and submit its attacks."""
        update = self._flagged(update)
        with self.store.transaction():
            jobs = self.record_and_plan_attacks(update, self.sanity_check(update))
            self._keep([update], kind="aggregate" if update.aggregate_of else "")
        self.submit(jobs)

    def _flagged(self, update: ClientUpdate) -> ClientUpdate:
        crafted = self.crafted_in(update.server_round)
        return update if crafted is None else dataclasses.replace(update, crafted=crafted)

    def _keep(self, updates: list[ClientUpdate], kind: str = "") -> None:
        """Store the updates ``capture.store`` keeps (one file for the round); without attacks
        in the scenario no update is attacked."""
        attacking = bool(self.scenario.attacks)
        kept = [update for update in updates if self.scenario.capture.keeps(attacking and self.wants(update))]
        if kept:
            self.captures.write(kept[0].server_round, kept, kind)

    def sanity_check(self, update: ClientUpdate) -> SanityVerdict | None:
        """Whether the attacks' model of the client re-computes an update they will attack, where
        its ground truth came with it (:mod:`fedleak.adversary.sanity`); ``None``: not checked.

        A check that fails (e.g. a user model the check cannot run) is its verdict, not a crash."""
        if not self.wants(update) or not self.truth.checks_updates:
            return None
        try:
            return check_update(self.model, update)
        except Exception as error:  # noqa: BLE001 - the check is advice: it must never cost the update
            _log.exception("the sanity check of round %s failed", update.server_round)
            return SanityVerdict("failed", f"{type(error).__name__}: {first_line(error)}", math.nan)

    def record_and_plan_attacks(self, update: ClientUpdate, sanity: SanityVerdict | None = None) -> list[AttackJob]:
        """Account for ``update`` in the privacy ledger and store it (with its sanity check); return
        the attack jobs it needs, every attack of the scenario if the capture policy selects it.

        An attack whose requirements the update cannot meet is stored "not applicable" at once."""
        epsilon = self._account(update)
        self.outcomes.epsilons[(update.server_round, update.partitions)] = epsilon
        self.store.record_update(update, epsilon, self.truth.batch_digest(update),
                                 None if sanity is None else str(sanity))
        return self.jobs_for(update, [attack.name for attack in self.scenario.attacks]) if self.wants(update) else []

    def jobs_for(self, update: ClientUpdate, attacks: list[str]) -> list[AttackJob]:
        """The jobs of ``attacks`` (names in the scenario) on ``update``; unmet requirements stored at once.

        The attacks get the update without the samples a lab client reported (the scores' ground
        truth); with the ``known_labels`` capability, with the true labels where they are known."""
        self.truth.remember(update)
        truth = self.truth.samples(update) if self.scenario.threat.known_labels else None
        update = dataclasses.replace(update, reported=None,
                                     known_labels=None if truth is None else truth.labels)
        jobs = []
        for attack in self.scenario.attacks:
            if attack.name not in attacks:
                continue
            job = AttackJob(update, attack.name, attack.config, self.model)  # type: ignore[arg-type]
            unmet = ATTACKS.get(attack.name).unmet_requirement(update)
            if unmet:
                self.record_outcome(AttackOutcome.unfinished(job, unmet, AttackStatus.NOT_APPLICABLE))
            else:
                jobs.append(job)
        return jobs

    def submit(self, jobs: list[AttackJob]) -> None:
        """Hand ``jobs`` (and any carried over from a stopped run) to the runner, unless a stop was
        requested; each stays pending until its outcome is stored."""
        jobs, self._carried = [*self._carried, *jobs], []
        if not jobs:
            return
        with self._pending_lock:
            self._pending.update((id(job), job) for job in jobs)
        STOP.check()
        self.runner.submit(jobs, self._finished)

    def _finished(self, outcome: AttackOutcome) -> None:
        """A runner's outcome; dropped if its job was already stored as cancelled (a stop)."""
        with self._pending_lock:
            if self._pending.pop(id(outcome.job), None) is None:
                return
        self.record_outcome(outcome)

    def cancel_pending(self, reason: str) -> int:
        """Store every job submitted and not yet finished as cancelled with ``reason``; how many."""
        with self._pending_lock:
            jobs = list(self._pending.values())
            self._pending.clear()
        for job in jobs:
            self.record_outcome(AttackOutcome.unfinished(job, reason, AttackStatus.CANCELLED))
        return len(jobs)

    def resume(self, last_round: int) -> int:
        """Continue a stopped run after ``last_round``: the ledger replays the stored
        participations, and every attack of a completed round without a stored result (it was
        queued, running or cancelled when the run stopped) is carried over to the next
        submission, re-run from the stored capture. Returns how many attacks are carried over."""
        rows = self.replay_ledger()
        done = self.store.attacked()
        for server_round in sorted({row["round"] for row in rows}):
            kept = {str(u.node_id): u for kind in ("", "aggregate") for u in self.captures.read(server_round, kind)}
            for row in (r for r in rows if r["round"] == server_round):
                self._carry(row, kept.get(row["node_id"]), done)
        return len(self._carried)

    def replay_ledger(self) -> list[dict[str, Any]]:
        """Replay the stored accepted updates into the privacy ledger and the ε of each attacked
        update, as they were when observed; returns their rows in the order they were stored."""
        rows = self.store.accepted_participations()
        for row in rows:
            partitions = tuple(json.loads(row["aggregate_of"])) if row["aggregate_of"] else (row["partition_id"],)
            if not row["aggregate_of"]:
                self._participate(row["partition_id"], row["batch_size"], row["local_steps"])
            self.outcomes.epsilons[(row["round"], partitions)] = Epsilon(row["epsilon"], row["model_epsilon"])
        return rows

    def _carry(self, row: dict[str, Any], update: ClientUpdate | None, done: set[tuple[int, str, str]]) -> None:
        """Carry over the attacks on one stored update that have no result; without its capture, log why not."""
        missing = [a.name for a in self.scenario.attacks if (row["round"], row["node_id"], a.name) not in done]
        if update is None:
            if missing and self.scenario.capture.selects(row["round"], None if row["aggregate_of"] else
                                                         row["partition_id"]):
                _log.warning("round %s: %d attacks cannot be re-run (capture.store kept no copy)",
                             row["round"], len(missing))
            return
        if self.wants(update):
            self._carried.extend(self.jobs_for(update, missing))

    def _account(self, update: ClientUpdate) -> Epsilon:
        """A client's participation enters the ledger; an aggregate's ε is its worst contributor's."""
        if update.aggregate_of:
            return self.ledger.worst(update.aggregate_of)
        return self._participate(update.partition_id, update.metadata.batch_size, update.metadata.local_steps)

    def _participate(self, partition_id: int, batch_size: int, local_steps: int) -> Epsilon:
        """One round of ``partition_id``'s training enters the ledger; its ε so far (none
        accounted where the client's shard size is unknown: an attached app's)."""
        shard_size = self.truth.shard_size(partition_id)
        if shard_size is None:
            return NO_EPSILON
        return self.ledger.record(partition_id, LocalRound(shard_size, batch_size, local_steps))

    def record_outcome(self, outcome: AttackOutcome) -> None:
        """Score ``outcome`` and store it (:class:`~fedleak.adversary.outcomes.OutcomeRecorder`)."""
        self.outcomes.record(outcome)
