"""The adversarial server: FedAvg wrapped by the adversary, plus per-round utility."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary import Adversary
from fedleak.data import ImageDataset, build_plan, load_dataset
from fedleak.evaluation import Evaluator
from fedleak.federation import records
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.models import ModelSpec
from fedleak.progress import Progress
from fedleak.runner import RUNNERS
from fedleak.scenario import Scenario
from fedleak.store import ResultStore
from fedleak.training import evaluate

RunLoader = Callable[[Context], tuple[Scenario, Path]]


def new_run_dir(out_dir: Path, scenario: Scenario) -> Path:
    """``<out>/<scenario name>-<UTC time>-<4 hex>``: unique, sortable, never reused."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(out_dir) / f"{scenario.name}-{stamp}-{secrets.token_hex(2)}"


def mean_train_loss(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate only the loss (the other reply metrics are per-client metadata)."""
    metrics = [reply["metrics"] for reply in replies]
    total = sum(float(m[weighting_key]) for m in metrics)
    loss = sum(float(m[records.TRAIN_LOSS]) * float(m[weighting_key]) for m in metrics) / total
    return MetricRecord({records.TRAIN_LOSS: loss})


def central_evaluation(spec: ModelSpec, test: ImageDataset, store: ResultStore, run_id: str,
                       progress: Progress) -> Callable[[int, ArrayRecord], MetricRecord]:
    """The global model's test accuracy after each round: the utility side of a defense."""

    def evaluate_round(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        accuracy, loss = evaluate(spec.with_weights(arrays.to_torch_state_dict()), test)
        store.record_round(run_id, server_round, accuracy, loss)
        if server_round > 0:
            progress.round_evaluated(server_round, accuracy)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    return evaluate_round


def run_server(grid: Grid, scenario: Scenario, run_dir: Path, progress: Progress) -> None:
    """Run the whole federation under the adversarial strategy, storing into ``run_dir``."""
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    spec = records.model_spec(scenario, splits)
    store, run_id = ResultStore(run_dir), run_dir.name
    store.start_run(run_id, scenario.name, scenario.to_toml())
    runner = RUNNERS[scenario.runner.name]()
    adversary = Adversary(scenario, spec, Evaluator(splits.train, plan, scenario.training), store, runner,
                          progress)
    inner = FedAvg(fraction_train=scenario.federation.fraction_train, fraction_evaluate=0.0,
                   min_train_nodes=1, min_available_nodes=scenario.partition.num_clients,
                   train_metrics_aggr_fn=mean_train_loss)
    strategy = AdversarialStrategy(inner, adversary, run_id, scenario.federation.rounds)
    test = splits.test.subset(slice(scenario.federation.test_samples))
    status = "failed"
    try:
        strategy.start(
            grid, ArrayRecord(spec.build(seed=scenario.seed).state_dict()),
            num_rounds=scenario.federation.rounds,
            train_config=records.training_record(scenario.training),
            evaluate_fn=central_evaluation(spec, test, store, run_id, progress),
        )
        runner.close(wait=True)
        status = "finished"
    finally:
        store.finish_run(run_id, status)
        store.close()


def build_server_app(load_run: RunLoader, progress: Progress) -> ServerApp:
    """A ServerApp whose scenario and run directory come from ``load_run(context)``."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        scenario, run_dir = load_run(context)
        run_server(grid, scenario, run_dir, progress)

    return app
