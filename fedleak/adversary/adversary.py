"""The adversary: capture → attack → score → store.

It knows nothing of how updates arrive (Flower's Message API strategy, or the legacy
path SecAgg+ needs): whatever captures replies turns each into a
:class:`~fedleak.core.updates.ClientUpdate` and calls :meth:`Adversary.observe_round`
(one round's individual updates) or :meth:`Adversary.observe` (one more, e.g. an
aggregate). It also keeps the privacy ledger, since it sees every participation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from fedleak.adversary.evaluation import Evaluator
from fedleak.adversary.malicious import random_query_weights
from fedleak.adversary.privacy import PrivacyLedger
from fedleak.adversary.progress import Progress
from fedleak.attacks import ATTACKS
from fedleak.core.errors import first_line
from fedleak.core.results import NO_EPSILON, AttackResult, Epsilon
from fedleak.core.updates import ClientUpdate, RejectedReply, Weights
from fedleak.defenses import LocalRound
from fedleak.models import ModelSpec
from fedleak.results.store import ResultStore
from fedleak.runners import AttackJob, AttackOutcome, AttackRunner
from fedleak.scenario import Scenario

_log = logging.getLogger(__name__)


class Adversary:
    def __init__(
        self,
        scenario: Scenario,
        model: ModelSpec,
        evaluator: Evaluator,
        store: ResultStore,
        runner: AttackRunner,
        progress: Progress | None = None,
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.evaluator = evaluator
        self.store = store
        self.runner = runner
        self.progress = progress or Progress()
        self.ledger = PrivacyLedger(scenario.defense_pipeline(), scenario.accounting.delta)
        self._epsilon: dict[tuple[int, tuple[int, ...]], Epsilon] = {}

    def is_random_query(self, server_round: int) -> bool:
        """Whether the server sends crafted random weights this round (the scenario allows
        ``threat.random_query.rounds`` only for a malicious server)."""
        return server_round in self.scenario.threat.random_query.rounds

    def weights_to_send(self, server_round: int, global_weights: Weights) -> Weights:
        """The global model, or in a random-query round fresh weights drawn for this round."""
        if not self.is_random_query(server_round):
            return global_weights
        seed = self.scenario.seed * 1_000_003 + server_round  # fresh per round, reproducible per run
        return random_query_weights(self.model, self.scenario.threat.random_query, seed)

    def wants(self, update: ClientUpdate) -> bool:
        partition = None if update.aggregate_of else update.partition_id
        return self.scenario.capture.selects(update.server_round, partition)

    def observe_round(self, updates: list[ClientUpdate], num_rounds: int,
                      rejected: Sequence[RejectedReply] = ()) -> None:
        """Observe one round's accepted updates (and store the replies that were not), reporting
        how many the capture policy selects.

        Their attacks are submitted together, so the runner can batch them."""
        for reply in rejected:
            self.store.record_rejection(reply)
        if updates or rejected:
            server_round = (updates[0] if updates else rejected[0]).server_round
            attacked = sum(self.wants(update) for update in updates)
            self.progress.round_captured(server_round, num_rounds, len(updates), attacked, list(rejected))
        self.runner.submit([job for update in updates for job in self.accept(update)], self.record_outcome)

    def observe(self, update: ClientUpdate) -> None:
        """Observe one more update (e.g. an aggregate) and submit its attacks."""
        self.runner.submit(self.accept(update), self.record_outcome)

    def accept(self, update: ClientUpdate) -> list[AttackJob]:
        """Account and record ``update``; every attack on it if the capture policy selects it.

        An attack whose requirements the update cannot meet is stored "not applicable" at once."""
        if self.is_random_query(update.server_round):
            update = dataclasses.replace(update, random_query=True)
        epsilon = self._account(update)
        self._epsilon[(update.server_round, update.partitions)] = epsilon
        self.store.record_update(update, epsilon,
                                 self.evaluator.batch_digest(update.partitions, update.server_round))
        if not self.wants(update):
            return []
        if self.scenario.threat.known_labels:  # a capability flag: granted by the scenario
            truth = self.evaluator.ground_truth(update.partitions, update.server_round)
            update = dataclasses.replace(update, known_labels=truth.labels)
        jobs = []
        for attack in self.scenario.attacks:
            job = AttackJob(update, attack.name, attack.config, self.model)  # type: ignore[arg-type]
            unmet = ATTACKS.get(attack.name).unmet_requirement(update)
            if unmet:
                self.record_outcome(AttackOutcome.unfinished(job, unmet, "not applicable"))
            else:
                jobs.append(job)
        return jobs

    def _account(self, update: ClientUpdate) -> Epsilon:
        """A client's participation enters the ledger; an aggregate's ε is its worst contributor's."""
        if update.aggregate_of:
            return self.ledger.worst(update.aggregate_of)
        meta = update.metadata
        shard_size = len(self.evaluator.plan.shard(update.partition_id))
        return self.ledger.record(update.partition_id, LocalRound(shard_size, meta.batch_size, meta.local_steps))

    def record_outcome(self, outcome: AttackOutcome) -> None:
        """Score a finished attack against the re-derived ground truth and store it.

        Scoring or storing that fails is stored as a failed result with the reason (and
        logged), so one bad outcome costs only its own row — with either runner."""
        result = self._result(outcome)
        image = None
        if outcome.reconstruction is not None:
            try:
                image = self._score(outcome, result)
            except Exception as error:  # noqa: BLE001 - a scoring bug must not stop the round's other results
                _log.exception("scoring %s failed", outcome.job.attack)
                result = self._result(outcome, f"scoring failed: {type(error).__name__}: {first_line(error)}")
        try:
            self.store.record_attack(result, image)
        except Exception as error:  # noqa: BLE001 - e.g. extras SQLite cannot take: keep the row, without them
            _log.exception("storing the result of %s failed", outcome.job.attack)
            result = self._result(outcome, f"storing failed: {type(error).__name__}: {first_line(error)}")
            self.store.record_attack(result)
        self.progress.attack_finished(result)

    def _result(self, outcome: AttackOutcome, failure: str | None = None) -> AttackResult:
        """The stored record of ``outcome`` before scoring; ``failure`` overrides its status."""
        update = outcome.job.update
        epsilon = self._epsilon.get((update.server_round, update.partitions), NO_EPSILON)
        return AttackResult(
            run_id=update.run_id, server_round=update.server_round, node_id=update.node_id,
            partition_id=update.partition_id, attack=outcome.job.attack,
            status="failed" if failure else outcome.status, seconds=outcome.seconds,
            error=failure or outcome.error, threat=self.scenario.threat.model_dump(mode="json"),
            defenses=[d.as_table() for d in self.scenario.defenses],
            epsilon=epsilon.update, model_epsilon=epsilon.model, random_query=update.random_query,
            batch_seconds=outcome.batch_seconds, batch_size=outcome.batch_size,
        )

    def _score(self, outcome: AttackOutcome, result: AttackResult) -> str | None:
        """Fill ``result``'s metrics from the matched scores; the saved image grid, if any."""
        update, reconstruction = outcome.job.update, outcome.reconstruction
        assert reconstruction is not None
        scores, truth = self.evaluator.score(update, reconstruction)
        result.metrics = scores.summary()
        result.num_reconstructed = len(reconstruction.images)
        result.num_ground_truth = len(truth)
        result.extras = reconstruction.extras
        if not self.scenario.save_images:
            return None
        name = f"r{update.server_round}-p{update.partition_id}-{outcome.job.attack}"
        # Matched samples first (reconstruction below its sample), then unmatched ones.
        matched = set(scores.truth_index.tolist())
        order = [*scores.truth_index, *(i for i in range(len(truth)) if i not in matched)]
        return self.store.save_grid(name, truth.images[order], reconstruction.images[scores.recon_index])
