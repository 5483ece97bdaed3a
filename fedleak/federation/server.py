"""The adversarial ServerApp: the Message API federation and the entry point of a run.

:func:`run_server` opens a :class:`~fedleak.federation.run.ServerRun` and drives it
through Flower's Message API (:func:`run_federation`) or, when a defense needs it
(SecAgg+), through the legacy path in :mod:`fedleak.federation.legacy`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary.progress import Progress
from fedleak.core import wire
from fedleak.core.errors import RunFailed, first_line
from fedleak.federation import legacy, records
from fedleak.federation.run import ServerRun, num_sampled_clients
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.scenario import Scenario

RunLoader = Callable[[Context], tuple[Scenario, Path]]


def mean_train_loss(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate only the loss (the other reply metrics are per-client metadata)."""
    metrics = [reply.metric_records["metrics"] for reply in replies]
    total = sum(records.scalar(m, weighting_key) for m in metrics)
    loss = sum(records.scalar(m, wire.TRAIN_LOSS) * records.scalar(m, weighting_key) for m in metrics) / total
    return MetricRecord({wire.TRAIN_LOSS: loss})


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
    status = "failed"
    error: str | None = "the server stopped unexpectedly"
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
