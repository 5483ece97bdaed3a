"""The adversary's outcome side: a finished attack scored against the ground truth, and stored.

Scoring and storing are one job apart from capturing and attacking: an outcome arrives from
the runner's thread (or at once, for an attack that does not apply), is matched against the
client's real samples (:mod:`fedleak.adversary.metrics`, through :class:`GroundTruth`), and
becomes one ``attack_results`` row, its image grid and, with ``save_images``, the whole
reconstruction (:mod:`fedleak.results.reconstructions`).
"""

from __future__ import annotations

import logging
import re

from fedleak.adversary.ground_truth import GroundTruth
from fedleak.adversary.progress import Progress
from fedleak.attacks.base import Reconstruction
from fedleak.core.errors import first_line
from fedleak.core.timing import PHASES
from fedleak.results.reconstructions import StoredReconstruction, write_reconstruction
from fedleak.results.rows import NO_EPSILON, AttackResult, AttackStatus, Epsilon
from fedleak.results.store import ResultStore
from fedleak.runners import AttackOutcome
from fedleak.scenario import Scenario

_log = logging.getLogger(__name__)


class OutcomeRecorder:
    """Scores each attack outcome of one run (or re-attack) and stores it, with the context the
    row records: the threat model, the defenses and the ε of the attacked update.

    Parameters
    ----------
    scenario:
        The run's scenario: its threat model and defenses are stored with every row, and
        ``save_images`` decides whether grids and whole reconstructions are written.
    truth:
        What reconstructions are scored against (``None`` from it: stored ``unscored``).
    store:
        Where the rows go.
    progress:
        Told of every stored result.
    variant:
        An offline re-attack's label, stored with each row and added to its file names.
    """

    def __init__(self, scenario: Scenario, truth: GroundTruth, store: ResultStore, progress: Progress,
                 variant: str | None = None) -> None:
        self.scenario = scenario
        self.truth = truth
        self.store = store
        self.progress = progress
        self.variant = variant
        self.epsilons: dict[tuple[int, tuple[int, ...]], Epsilon] = {}
        """ε of each observed update by (round, partitions), filled in by the adversary's ledger."""

    def record(self, outcome: AttackOutcome) -> None:
        """Score a finished attack against the re-derived ground truth and store it.

        Scoring or storing that fails is stored as a failed result with the reason (and
        logged), so one bad outcome costs only its own row — with either runner."""
        with PHASES.measure("scoring and storing"):
            self._record_outcome(outcome)

    def _record_outcome(self, outcome: AttackOutcome) -> None:
        result = self._result(outcome)
        image = kept = None
        if outcome.reconstruction is not None:
            kept = self._keep_whole(outcome, outcome.reconstruction)
            try:
                image = self._score(outcome, outcome.reconstruction, result)
            except Exception as error:  # noqa: BLE001 - a scoring bug must not stop the round's other results
                _log.exception("scoring %s failed", outcome.job.attack)
                result = self._result(outcome, f"scoring failed: {type(error).__name__}: {first_line(error)}")
        try:
            self.store.record_attack(result, image, kept)
        except Exception as error:  # noqa: BLE001 - e.g. extras SQLite cannot take: keep the row, without them
            _log.exception("storing the result of %s failed", outcome.job.attack)
            result = self._result(outcome, f"storing failed: {type(error).__name__}: {first_line(error)}")
            self.store.record_attack(result)
        self.progress.attack_finished(result)

    def _result(self, outcome: AttackOutcome, failure: str | None = None) -> AttackResult:
        """The stored record of ``outcome`` before scoring; ``failure`` overrides its status."""
        update = outcome.job.update
        epsilon = self.epsilons.get((update.server_round, update.partitions), NO_EPSILON)
        return AttackResult(
            run_id=update.run_id, server_round=update.server_round, node_id=update.node_id,
            partition_id=update.partition_id, attack=outcome.job.attack,
            status=AttackStatus.FAILED if failure else outcome.status, seconds=outcome.seconds,
            error=failure or outcome.error, threat=self.scenario.threat.model_dump(mode="json"),
            defenses=[d.as_table() for d in self.scenario.defenses],
            epsilon=epsilon.update, model_epsilon=epsilon.model, crafted=update.crafted,
            batch_seconds=outcome.batch_seconds, batch_size=outcome.batch_size,
            attack_config=outcome.job.config.model_dump(mode="json"), variant=self.variant,
        )

    def _artifact_name(self, outcome: AttackOutcome) -> str:
        """The file name (no suffix) of an outcome's image grid and kept reconstruction."""
        update = outcome.job.update
        name = f"r{update.server_round}-p{update.partition_id}-{outcome.job.attack}"
        if self.variant:  # beside the run's own files, not over them
            name += "-" + re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.variant)
        return name

    def _keep_whole(self, outcome: AttackOutcome, reconstruction: Reconstruction) -> str | None:
        """Store every image, label and extra the attack returned (under ``save_images``); the
        file's path, or ``None`` (not kept, or the write failed: logged, the score still stored)."""
        if not self.scenario.save_images:
            return None
        try:
            return write_reconstruction(self.store.directory, self._artifact_name(outcome), StoredReconstruction(
                reconstruction.images, reconstruction.labels, reconstruction.extras))
        except Exception:  # noqa: BLE001 - e.g. a full disk: the scores matter more than the raw file
            _log.exception("keeping the reconstruction of %s failed", outcome.job.attack)
            return None

    def _score(self, outcome: AttackOutcome, reconstruction: Reconstruction, result: AttackResult) -> str | None:
        """Fill ``result``'s metrics from the matched scores (``unscored`` without a ground
        truth); the saved image grid, if any."""
        result.num_reconstructed = len(reconstruction.images)
        result.extras = reconstruction.extras
        scored = self.truth.score(outcome.job.update, reconstruction)
        if scored is None:
            result.status = AttackStatus.UNSCORED
            return self.store.save_grid(self._artifact_name(outcome), None, reconstruction.images) \
                if self.scenario.save_images else None
        scores, truth = scored
        result.metrics = scores.summary()
        result.num_ground_truth = len(truth)
        if not self.scenario.save_images:
            return None
        name = self._artifact_name(outcome)
        # Matched samples first (reconstruction below its sample), then unmatched ones.
        matched = set(scores.truth_index.tolist())
        order = [*scores.truth_index, *(i for i in range(len(truth)) if i not in matched)]
        return self.store.save_grid(name, truth.images[order], reconstruction.images[scores.recon_index])
