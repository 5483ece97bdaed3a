"""The server on Flower's legacy strategy path, which SecAgg+ needs in flwr 1.41.

It reuses the Message API path's :class:`~fedleak.federation.run.ServerRun` and
:class:`~fedleak.adversary.Adversary` (the client side is
:class:`~fedleak.federation.client_app.LegacyClient`, around the same ``local_round``).
What is new is only the translation: the legacy strategy remembers what it sends and
captures the unmasked aggregate; the SecAgg+ workflow's tap captures each masked vector.

Replies pass the same checks as on the Message API path
(:class:`~fedleak.federation.replies.ReplyChecker`): a masked vector that fails them is
stored as rejected and not attacked — but SecAgg+ has already summed it, since the
server cannot unmask a sum without it. Client failures are stored as failed replies, and
a round with no result ends the run as failed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from flwr.app import Context
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import Grid, LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow

from fedleak.core import wire
from fedleak.core.errors import RunFailed, first_line
from fedleak.core.stopping import STOP
from fedleak.core.updates import ClientUpdate, Weights
from fedleak.data import build_plan
from fedleak.defenses.secagg import SecAggPlus
from fedleak.federation import records
from fedleak.federation.replies import InvalidReply, ReplyChecker
from fedleak.federation.run import ServerRun
from fedleak.federation.secagg_capture import MaskedVector, capturing_workflow
from fedleak.results.rows import RejectedReply, ReplyStatus
from fedleak.scenario import Scenario


def max_examples(scenario: Scenario) -> int:
    """The most examples any client trains on in a round: SecAgg+'s ``max_weight``."""
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    training = scenario.training
    return max(min(len(plan.shard(p)), plan.local_steps(p, training) * training.batch_size)
               for p in range(plan.num_clients))


class LegacyCapture:
    """Turns what the legacy SecAgg+ server sees into :class:`ClientUpdate` s for the adversary."""

    def __init__(self, run: ServerRun, names: list[str]) -> None:
        self.run = run
        self.names = names
        self.sent: Weights = {}
        self.checker = ReplyChecker(run.run_id, run.scenario.training, run.plan)

    def weights(self, arrays: list[np.ndarray]) -> Weights:
        return {k: torch.from_numpy(np.asarray(a, dtype=np.float32)) for k, a in zip(self.names, arrays, strict=True)}

    def masked_vectors(self, vectors: list[MaskedVector]) -> None:
        """Every masked vector of a round, read as weights (the server's view of one client)."""
        checked = [self.checker.check(v.server_round, v.node_id, v.metrics,
                                      lambda v=v: self.weights(v.seen), self.sent) for v in vectors]  # type: ignore[misc]
        self.run.adversary.observe_round([c for c in checked if isinstance(c, ClientUpdate)],
                                         self.run.scenario.federation.rounds,
                                         [c for c in checked if isinstance(c, RejectedReply)])

    def failures(self, server_round: int, failures: list[Any]) -> None:
        """Store each client failure of a round as a failed reply."""
        for failure in failures:
            if isinstance(failure, BaseException):
                node_id, message = -1, first_line(failure)  # the node is unknown
            else:
                proxy, result = failure
                node_id, message = int(proxy.cid), first_line(result.status.message)
            self.run.adversary.store.record_rejection(
                RejectedReply(self.run.run_id, server_round, node_id, None, ReplyStatus.FAILED,
                              f"client error: {message}"))

    def aggregate(self, server_round: int, aggregate: list[np.ndarray],
                  results: list[tuple[ClientProxy, FitRes]]) -> None:
        """The unmasked aggregate, attacked as one batch of every contributor's samples; not
        attacked (a rejected row says why) when a contributor did not declare its training as
        fedleak's clients do (e.g. a stock Flower client): its samples are unknown."""
        try:
            for _, res in results:
                partition_id = self.checker.partition_id(res.metrics)
                self.checker.metadata(res.metrics, partition_id, server_round)
        except InvalidReply as problem:
            self.run.adversary.store.record_rejection(RejectedReply(
                self.run.run_id, server_round, -1, None, ReplyStatus.REJECTED,
                f"the unmasked aggregate of {len(results)} replies is not attacked: a contributor's {problem}"))
            return
        contributors = tuple(sorted(int(res.metrics[wire.PARTITION_ID]) for _, res in results))
        metrics = {**results[0][1].metrics,
                   wire.NUM_EXAMPLES: sum(res.num_examples for _, res in results),
                   wire.BATCH_SIZE: sum(int(res.metrics[wire.BATCH_SIZE]) for _, res in results)}
        update = self._update(server_round, -1, {**metrics, wire.PARTITION_ID: -1}, aggregate)
        self.run.adversary.observe(dataclasses.replace(update, aggregate_of=contributors))

    def _update(self, server_round: int, node_id: int, metrics: Any, arrays: list[np.ndarray]) -> ClientUpdate:
        return records.client_update(self.run.run_id, server_round, node_id, metrics,
                                     self.run.scenario.training.algorithm, self.sent, self.weights(arrays))


class AdversarialFedAvg(FedAvg):
    """Legacy FedAvg that remembers the weights it sends and captures the aggregate.

    Under SecAgg+ every result carries the same unmasked aggregate, so FedAvg of them
    is that aggregate; the per-client metrics and example counts arrive in the clear.
    """

    def __init__(self, capture: LegacyCapture, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.capture = capture

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any) -> Any:
        STOP.check()  # a stop requested: no new round
        self.capture.sent = self.capture.weights(parameters_to_ndarrays(parameters))
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures: list[Any]) -> tuple[Parameters | None, dict[str, Scalar]]:
        STOP.check()
        self.capture.failures(server_round, failures)
        if not results:
            raise RunFailed(f"round {server_round}: no client result ({len(failures)} failed)")
        self.capture.aggregate(server_round, parameters_to_ndarrays(results[0][1].parameters), results)
        return super().aggregate_fit(server_round, results, failures)


def run_federation(grid: Grid, context: Context, run: ServerRun) -> None:
    """The legacy path: FedAvg under Flower's SecAgg+ workflow, captured on both ends."""
    scenario = run.scenario
    capture = LegacyCapture(run, list(run.initial_weights()))
    secagg = next(stage for stage in scenario.defense_pipeline().stages if isinstance(stage, SecAggPlus))
    workflow = capturing_workflow(secagg.config, capture.masked_vectors, max_examples(scenario))
    training = dict(records.training_record(scenario.training))

    def evaluate_fn(server_round: int, arrays: list[np.ndarray], config: dict[str, Scalar]
                    ) -> tuple[float, dict[str, Scalar]]:
        accuracy, loss = run.evaluate_round(server_round, capture.weights(arrays))
        return loss, {"accuracy": accuracy}

    num_clients = scenario.partition.num_clients
    strategy = AdversarialFedAvg(
        capture, fraction_fit=scenario.federation.fraction_train, fraction_evaluate=0.0,
        min_fit_clients=1, min_evaluate_clients=0, min_available_clients=num_clients,
        initial_parameters=ndarrays_to_parameters([w.numpy() for w in run.initial_weights().values()]),
        on_fit_config_fn=lambda server_round: {**training, "server-round": server_round},
        evaluate_fn=evaluate_fn,
        fit_metrics_aggregation_fn=lambda metrics: {},
    )
    legacy_context = LegacyContext(context=context, config=ServerConfig(num_rounds=scenario.federation.rounds),
                                   strategy=strategy)
    DefaultWorkflow(fit_workflow=workflow)(grid, legacy_context)
