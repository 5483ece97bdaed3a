"""The adversarial ServerApp: the Message API federation and the entry point of a run.

:func:`run_server` opens a :class:`~fedleak.federation.run.ServerRun` and drives it
through Flower's Message API (:func:`run_federation`) or, when a defense needs it
(SecAgg+), through the legacy path in :mod:`fedleak.federation.secagg_path`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary.progress import Progress
from fedleak.core import wire
from fedleak.core.errors import RunFailed, first_line
from fedleak.core.stopping import STOP
from fedleak.federation import records, secagg_path
from fedleak.federation.replies import ServerReplies
from fedleak.federation.run import ServerRun, num_sampled_clients
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.results.rows import RunStatus
from fedleak.scenario import Scenario

RunLoader = Callable[[Context], tuple[Scenario, Path]]


def mean_train_loss(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate only the loss (the other reply metrics are per-client metadata); a stock
    client that reported no loss (NaN, :class:`ServerReplies`) is left out of the mean."""
    metrics = [m for m in (reply.metric_records[records.KEYS.metrics] for reply in replies)
               if math.isfinite(records.scalar(m, wire.TRAIN_LOSS))]
    total = sum(records.scalar(m, weighting_key) for m in metrics)
    loss = sum(records.scalar(m, wire.TRAIN_LOSS) * records.scalar(m, weighting_key) for m in metrics) / total \
        if total else math.nan
    return MetricRecord({wire.TRAIN_LOSS: loss})


def run_federation(grid: Grid, context: Context, run: ServerRun) -> None:
    """The Message API path: FedAvg (inside any defense's Flower wrapper) under the adversary,
    for the rounds after the last completed one (all of them, unless the run is resumed)."""
    scenario = run.scenario
    fedavg = FedAvg(fraction_train=scenario.federation.fraction_train, fraction_evaluate=0.0,
                    min_train_nodes=1, min_available_nodes=scenario.partition.num_clients,
                    train_metrics_aggr_fn=mean_train_loss)
    defenses = scenario.defense_pipeline()
    inner = defenses.wrap_strategy(fedavg, num_sampled_clients(scenario))
    offset = run.last_round  # Flower counts its rounds from 1 again; ours go on
    replies = ServerReplies(run.run_id, scenario, run.adversary.model, run.plan)
    strategy = AdversarialStrategy(inner, run.adversary, replies, run.run_id, scenario.federation.rounds,
                                   offset, numpy_seed=scenario.seed if defenses.draws_global_numpy else None)

    def evaluate_fn(flower_round: int, arrays: ArrayRecord) -> MetricRecord:
        if flower_round == 0 and run.resumed_from is not None:  # the checkpoint: evaluated before the stop
            accuracy, loss = run.stored_round(offset)
        else:
            accuracy, loss = run.evaluate_round(flower_round + offset, arrays.to_torch_state_dict())
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    strategy.start(grid, ArrayRecord(run.initial_weights()), num_rounds=run.remaining_rounds,
                   train_config=records.training_record(scenario.training), evaluate_fn=evaluate_fn)


def run_server(grid: Grid, context: Context, scenario: Scenario, run_dir: Path, progress: Progress,
               resume: bool = False) -> None:
    """Run the whole federation under the adversary, storing into ``run_dir`` (``resume``:
    continue the stopped run stored there).

    The run ends ``finished``; ``failed`` with the reason stored (a :class:`RunFailed`, e.g. a
    round without an accepted reply, ends it quietly; anything else is re-raised); or
    ``interrupted`` when a stop was requested (:data:`~fedleak.core.stopping.STOP`), whatever
    the stop made the round raise.
    """
    run = ServerRun.open(scenario, run_dir, progress, resume)
    drive = secagg_path.run_federation if scenario.defense_pipeline().legacy_path else run_federation
    try:
        if run.remaining_rounds > 0:
            drive(grid, context, run)
        run.adversary.submit([])  # a resumed run's carried-over attacks, when no round was left to carry them
        run.adversary.runner.close(wait=scenario.runner.wait)
    except Exception as failure:
        if STOP.requested:
            run.interrupt(STOP.reason)
            return
        if isinstance(failure, RunFailed):
            run.finish(RunStatus.FAILED, str(failure))
            return
        run.finish(RunStatus.FAILED, f"{type(failure).__name__}: {first_line(failure)}")
        raise
    except BaseException:
        run.finish(RunStatus.FAILED, "the server stopped unexpectedly")
        raise
    if STOP.requested:  # the stop came while the last attacks were drained
        run.interrupt(STOP.reason)
    else:
        run.finish(RunStatus.FINISHED)


def build_server_app(load_run: RunLoader, progress: Progress, resume: bool = False) -> ServerApp:
    """A ServerApp whose scenario and run directory come from ``load_run(context)``
    (``resume``: a stopped run stored there, continued)."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        scenario, run_dir = load_run(context)
        run_server(grid, context, scenario, run_dir, progress, resume)

    return app
