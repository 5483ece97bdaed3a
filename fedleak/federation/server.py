"""The adversarial server: one run's shared state, and the Message API federation.

:class:`ServerRun` holds what every server-side path needs — the store, the adversary,
the utility metric. :func:`run_server` drives a run through Flower's Message API
(:func:`run_federation`) or, when a defense needs it (SecAgg+), through the legacy
path in :mod:`fedleak.federation.legacy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary import Adversary
from fedleak.audit import stored_audit
from fedleak.data import ImageDataset, build_plan, load_dataset
from fedleak.errors import RunFailed, first_line
from fedleak.evaluation import Evaluator
from fedleak.federation import legacy, records
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.models import ModelSpec
from fedleak.progress import Progress
from fedleak.runner import RUNNERS, AttackRunner
from fedleak.scenario import Scenario
from fedleak.store import ResultStore
from fedleak.training import evaluate
from fedleak.updates import Weights

RunLoader = Callable[[Context], tuple[Scenario, Path]]


def mean_train_loss(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate only the loss (the other reply metrics are per-client metadata)."""
    metrics = [reply["metrics"] for reply in replies]
    total = sum(float(m[weighting_key]) for m in metrics)
    loss = sum(float(m[records.TRAIN_LOSS]) * float(m[weighting_key]) for m in metrics) / total
    return MetricRecord({records.TRAIN_LOSS: loss})


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
        store.record_audit(run_id, *stored_audit(spec.build(seed=scenario.seed), probe_seed=scenario.seed))
        runner = RUNNERS[scenario.runner.name](scenario.runner)
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


def run_federation(grid: Grid, context: Context, run: ServerRun) -> None:
    """The Message API path: FedAvg (inside any defense's Flower wrapper) under the adversary."""
    scenario = run.scenario
    fedavg = FedAvg(fraction_train=scenario.federation.fraction_train, fraction_evaluate=0.0,
                    min_train_nodes=1, min_available_nodes=scenario.partition.num_clients,
                    train_metrics_aggr_fn=mean_train_loss)
    inner = scenario.defense_pipeline().wrap_strategy(fedavg, num_sampled_clients(scenario))
    strategy = AdversarialStrategy(inner, run.adversary, run.run_id, scenario.federation.rounds)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        accuracy, loss = run.evaluate_round(server_round, arrays.to_torch_state_dict())
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    strategy.start(grid, ArrayRecord(run.initial_weights()), num_rounds=scenario.federation.rounds,
                   train_config=records.training_record(scenario.training), evaluate_fn=evaluate_fn)


def run_server(grid: Grid, context: Context, scenario: Scenario, run_dir: Path, progress: Progress) -> None:
    """Run the whole federation under the adversary, storing into ``run_dir``.

    The run ends ``finished``, or ``failed`` with the reason stored: a :class:`RunFailed`
    (e.g. a round without an accepted reply) ends it quietly, anything else is re-raised.
    """
    run = ServerRun.open(scenario, run_dir, progress)
    drive = legacy.run_federation if scenario.defense_pipeline().legacy_path else run_federation
    status, error = "failed", "the server stopped unexpectedly"
    try:
        drive(grid, context, run)
        run.runner.close(wait=scenario.runner.wait)
        status, error = "finished", None
    except RunFailed as failure:
        error = str(failure)
    except Exception as failure:
        error = f"{type(failure).__name__}: {first_line(failure)}"
        raise
    finally:
        if status == "failed":
            run.runner.close(wait=False)  # record what was still queued or running as cancelled
        run.store.finish_run(run.run_id, status, error)
        run.store.close()


def build_server_app(load_run: RunLoader, progress: Progress) -> ServerApp:
    """A ServerApp whose scenario and run directory come from ``load_run(context)``."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        scenario, run_dir = load_run(context)
        run_server(grid, context, scenario, run_dir, progress)

    return app
