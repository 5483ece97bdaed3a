"""The honest client: train on this round's planned batches, apply defenses, reply.

:func:`local_round` is the client's whole job and knows nothing of Flower's message
types; :func:`train` (Message API) and :class:`LegacyClient` (the NumPyClient path
SecAgg+ needs) only translate to and from it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.client import NumPyClient
from flwr.client.message_handler.message_handler import handle_legacy_message_from_msgtype
from flwr.client.mod import make_ffn
from flwr.clientapp import ClientApp
from flwr.common import Scalar

from fedleak.client.local_round import local_evaluation, local_round
from fedleak.core import wire
from fedleak.core.errors import FedleakError
from fedleak.federation import records
from fedleak.scenario import Scenario

ScenarioLoader = Callable[[Context], Scenario]


def partition_of(context: Context, scenario: Scenario) -> int:
    """This node's partition id (simulation sets it; deployments pass ``--node-config``)."""
    try:
        partition_id = int(context.node_config["partition-id"])
    except KeyError:
        raise FedleakError("node config lacks 'partition-id' (start the SuperNode with "
                           "--node-config 'partition-id=0 num-partitions=N')") from None
    if not 0 <= partition_id < scenario.partition.num_clients:
        raise FedleakError(f"partition-id {partition_id} outside 0..{scenario.partition.num_clients - 1}")
    return partition_id


def train(message: Message, context: Context, scenario: Scenario) -> Message:
    """The Message API train handler: one :func:`local_round`."""
    config = message.content.config_records[records.KEYS.config]
    reply = local_round(scenario, partition_of(context, scenario), int(records.scalar(config, "server-round")),
                        records.training_from_record(config, scenario.training),
                        message.content.array_records[records.KEYS.arrays].to_torch_state_dict())
    content = records.reply_content(reply.arrays, reply.encoding, reply.metrics)
    return Message(content=content, reply_to=message)


def evaluate(message: Message, context: Context, scenario: Scenario) -> Message:
    """The Message API evaluate handler: the received model on this client's shard (fedleak's
    own server evaluates centrally and sends none; a stock server's FedAvg does)."""
    sent = message.content.array_records[records.KEYS.arrays].to_torch_state_dict()
    metrics = local_evaluation(scenario, partition_of(context, scenario), sent)
    return Message(content=RecordDict({records.KEYS.metrics: MetricRecord({**metrics})}), reply_to=message)


class LegacyClient(NumPyClient):
    """The honest client as a NumPyClient: parameters travel as a list in state-dict order."""

    def __init__(self, scenario: Scenario, partition_id: int) -> None:
        self.scenario = scenario
        self.partition_id = partition_id
        self.names = records.parameter_names(scenario)

    def fit(self, parameters: list[np.ndarray], config: dict[str, Scalar]
            ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:
        sent = {k: torch.from_numpy(np.array(a)) for k, a in zip(self.names, parameters, strict=True)}
        reply = local_round(self.scenario, self.partition_id, int(records.scalar(config, "server-round")),
                            records.training_from_record(config, self.scenario.training), sent)
        return [reply.arrays[k] for k in self.names], int(reply.metrics[wire.NUM_EXAMPLES]), dict(reply.metrics)


def legacy_train(message: Message, context: Context, scenario: Scenario) -> Message:
    """Answer one legacy (FitIns) message with a :class:`LegacyClient`."""
    client = LegacyClient(scenario, partition_of(context, scenario))
    return handle_legacy_message_from_msgtype(client_fn=lambda _: client.to_client(), message=message,
                                              context=context)


def build_client_app(load_scenario: ScenarioLoader) -> ClientApp:
    """A ClientApp whose scenario comes from ``load_scenario(context)``.

    The path (Message API, or legacy for SecAgg+) and the defenses' Flower mods
    (``fixedclipping_mod``, ``secaggplus_mod``) are chosen per call, because the
    scenario is known only once a run's context arrives.
    """
    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        scenario = load_scenario(context)
        pipeline = scenario.defense_pipeline()
        handler = legacy_train if pipeline.legacy_path else train
        return make_ffn(lambda msg, ctx: handler(msg, ctx, scenario), pipeline.client_mods())(message, context)

    @app.evaluate()
    def _evaluate(message: Message, context: Context) -> Message:
        return evaluate(message, context, load_scenario(context))

    return app


