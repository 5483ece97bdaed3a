"""One run's server side, shared by the Message API and the legacy (SecAgg+) paths.

Flower-free: :class:`ServerRun` holds the store, the adversary and the utility metric,
so both paths import it and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedleak.adversary import Adversary
from fedleak.adversary.audit import stored_audit
from fedleak.adversary.evaluation import Evaluator
from fedleak.adversary.progress import Progress
from fedleak.client.training import evaluate
from fedleak.core.digests import weights_digest
from fedleak.core.updates import Weights
from fedleak.data import ImageDataset, build_plan, load_dataset
from fedleak.models import ModelSpec
from fedleak.results.store import ResultStore
from fedleak.runners import RUNNERS, AttackRunner
from fedleak.scenario import Scenario


def num_sampled_clients(scenario: Scenario) -> int:
    """How many clients FedAvg samples per round (all are available: min_available = all)."""
    return max(int(scenario.partition.num_clients * scenario.federation.fraction_train), 1)


@dataclass
class ServerRun:
    """One run's server side: what it stores, who attacks, how utility is measured."""

    scenario: Scenario
    run_id: str
    spec: ModelSpec
    store: ResultStore
    runner: AttackRunner
    adversary: Adversary
    test: ImageDataset
    progress: Progress

    @classmethod
    def open(cls, scenario: Scenario, run_dir: Path, progress: Progress) -> ServerRun:
        splits = load_dataset(scenario.dataset)
        plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
        spec = scenario.model_spec(splits)
        store, run_id = ResultStore(run_dir), run_dir.name
        store.start_run(run_id, scenario.name, scenario.to_toml())
        # The architecture's risk at the initial weights: data-free, and cheap next to a round.
        initial = spec.build(seed=scenario.seed)
        store.record_data_plan(run_id, {**plan.fingerprint(scenario.training), "pool": splits.train.digest(),
                                        "initial_model": weights_digest(initial.state_dict())})
        store.record_audit(run_id, *stored_audit(initial, probe_seed=scenario.seed))
        runner = RUNNERS.get(scenario.runner.name)(scenario.runner)
        adversary = Adversary(scenario, spec, Evaluator(splits.train, plan, scenario.training), store, runner,
                              progress)
        test = splits.test.subset(slice(scenario.federation.test_samples))
        return cls(scenario, run_id, spec, store, runner, adversary, test, progress)

    def initial_weights(self) -> Weights:
        return self.spec.build(seed=self.scenario.seed).state_dict()

    def evaluate_round(self, server_round: int, weights: Weights) -> tuple[float, float]:
        """The global model's test accuracy and loss (the utility side of a defense), stored
        with the worst client's ε so far."""
        accuracy, loss = evaluate(self.spec.with_weights(weights), self.test)
        self.store.record_round(self.run_id, server_round, accuracy, loss, self.adversary.ledger.worst())
        if server_round > 0:
            self.progress.round_evaluated(server_round, accuracy)
        return accuracy, loss


