"""The adversarial ServerApp: the Message API federation and the entry point of a run.

:func:`run_server` opens a :class:`~fedleak.federation.run.ServerRun` and drives it
through Flower's Message API (:func:`run_federation`) or, when a defense needs it
(SecAgg+), through the legacy path in :mod:`fedleak.federation.legacy`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from flwr.app import ArrayRecord, Context, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.adversary.progress import Progress
from fedleak.core import wire
from fedleak.core.config import AppConfig
from fedleak.core.errors import RunFailed, first_line
from fedleak.core.stopping import STOP
from fedleak.core.updates import ClientUpdate, RejectedReply, Weights
from fedleak.federation import legacy, records
from fedleak.federation.attached import AppReplies
from fedleak.federation.replies import ReplyChecker
from fedleak.federation.run import ServerRun, num_sampled_clients
from fedleak.federation.strategy import AdversarialStrategy
from fedleak.scenario import Scenario

RunLoader = Callable[[Context], tuple[Scenario, Path]]


def mean_train_loss(replies: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate only the loss (the other reply metrics are per-client metadata); a stock
    client that reported no loss (NaN, :class:`ServerReplies`) is left out of the mean."""
    metrics = [m for m in (reply.metric_records["metrics"] for reply in replies)
               if math.isfinite(records.scalar(m, wire.TRAIN_LOSS))]
    total = sum(records.scalar(m, weighting_key) for m in metrics)
    loss = sum(records.scalar(m, wire.TRAIN_LOSS) * records.scalar(m, weighting_key) for m in metrics) / total \
        if total else math.nan
    return MetricRecord({wire.TRAIN_LOSS: loss})


STOCK_CLIENT = f"a stock client (no {wire.PARTITION_ID} in its metrics): not in the data plan, attacked unscored"
"""The warning every accepted stock reply is stored with in fedleak's own run."""


class ServerReplies:
    """The boundary of fedleak's own run (a :class:`~fedleak.federation.strategy.ReplyReader`).

    fedleak's clients' replies are checked against the data plan (:class:`ReplyChecker`). A
    stock Flower client's — no ``partition-id`` among its metrics — is read as an attached
    app's (:class:`~fedleak.federation.attached.AppReplies`): its training taken from what it
    declares, else from the train config the server sent, with warnings; numbered after the
    plan's partitions; attacked and stored ``unscored``, since the plan knows nothing of its
    data. Its metrics are rewritten to fedleak's keys, so FedAvg aggregates it with the rest
    (Flower's FedAvg skips a round whose replies' metric keys differ).
    """

    def __init__(self, run: ServerRun) -> None:
        scenario, spec, plan = run.scenario, run.spec, run.evaluator.plan
        self.checker = ReplyChecker(run.run_id, scenario.training, plan)
        app = AppConfig(image_shape=spec.image_shape, num_classes=spec.num_classes, mean=spec.mean, std=spec.std)
        sent = {k: v for k, v in records.training_record(scenario.training).items() if v != 0}  # 0 steps: from epochs
        self.stock = AppReplies(run.run_id, app, first_client=plan.num_clients, config=sent)

    def read(self, server_round: int, node_id: int, content: RecordDict, sent: Weights
             ) -> ClientUpdate | RejectedReply:
        metrics = list(content.metric_records.values())
        if any(wire.PARTITION_ID in m for m in metrics):
            return self.checker.read(server_round, node_id, content, sent)
        outcome = self.stock.read(server_round, node_id, content, sent)
        if isinstance(outcome, ClientUpdate):
            examples = metrics[0].get(wire.NUM_EXAMPLES) if metrics else None
            if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
                return RejectedReply(outcome.run_id, server_round, node_id, outcome.partition_id, "rejected",
                                     f"a stock client's reply without a positive integer {wire.NUM_EXAMPLES} "
                                     "(FedAvg weights replies by it)")
            _as_fedleaks_metrics(content, outcome, metrics[0])
            outcome = dataclasses.replace(outcome, warnings=(STOCK_CLIENT, *outcome.warnings))
        return outcome


def _as_fedleaks_metrics(content: RecordDict, update: ClientUpdate, declared: MetricRecord) -> None:
    """Replace a stock reply's metrics by fedleak's keys (its loss kept where it gave one)."""
    loss = next((declared[k] for k in ("train_loss", wire.TRAIN_LOSS, "loss") if k in declared), math.nan)
    loss = float(loss) if isinstance(loss, int | float) and not isinstance(loss, bool) else math.nan
    for name in list(content.metric_records):
        del content[name]
    meta = update.metadata
    content["metrics"] = MetricRecord({
        wire.NUM_EXAMPLES: meta.num_examples, wire.PARTITION_ID: update.partition_id,
        wire.LOCAL_STEPS: meta.local_steps, wire.LR: meta.lr, wire.BATCH_SIZE: meta.batch_size,
        wire.TRAIN_LOSS: loss})


def run_federation(grid: Grid, context: Context, run: ServerRun) -> None:
    """The Message API path: FedAvg (inside any defense's Flower wrapper) under the adversary,
    for the rounds after the last completed one (all of them, unless the run is resumed)."""
    scenario = run.scenario
    fedavg = FedAvg(fraction_train=scenario.federation.fraction_train, fraction_evaluate=0.0,
                    min_train_nodes=1, min_available_nodes=scenario.partition.num_clients,
                    train_metrics_aggr_fn=mean_train_loss)
    inner = scenario.defense_pipeline().wrap_strategy(fedavg, num_sampled_clients(scenario))
    offset = run.last_round  # Flower counts its rounds from 1 again; ours go on
    strategy = AdversarialStrategy(inner, run.adversary, ServerReplies(run), run.run_id, scenario.federation.rounds,
                                   offset)

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
    drive = legacy.run_federation if scenario.defense_pipeline().legacy_path else run_federation
    try:
        if run.remaining_rounds > 0:
            drive(grid, context, run)
        run.adversary.submit([])  # a resumed run's carried-over attacks, when no round was left to carry them
        run.runner.close(wait=scenario.runner.wait)
    except Exception as failure:
        if STOP.requested:
            run.interrupt(STOP.reason)
            return
        if isinstance(failure, RunFailed):
            run.finish("failed", str(failure))
            return
        run.finish("failed", f"{type(failure).__name__}: {first_line(failure)}")
        raise
    except BaseException:
        run.finish("failed", "the server stopped unexpectedly")
        raise
    if STOP.requested:  # the stop came while the last attacks were drained
        run.interrupt(STOP.reason)
    else:
        run.finish("finished")


def build_server_app(load_run: RunLoader, progress: Progress, resume: bool = False) -> ServerApp:
    """A ServerApp whose scenario and run directory come from ``load_run(context)``
    (``resume``: a stopped run stored there, continued)."""
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        scenario, run_dir = load_run(context)
        run_server(grid, context, scenario, run_dir, progress, resume)

    return app
