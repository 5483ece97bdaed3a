"""The honest client: train on this round's planned batches, apply defenses, reply."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedleak.data import build_plan, load_dataset
from fedleak.defenses import DefensePipeline
from fedleak.errors import FedleakError
from fedleak.federation import records
from fedleak.scenario import Scenario
from fedleak.training import train_locally

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
    """One round of local training on the data plan's batches for (partition, round)."""
    config = message.content["config"]
    training = records.training_from_record(config)
    server_round, partition_id = int(config["server-round"]), partition_of(context, scenario)
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    sent = message.content["arrays"].to_torch_state_dict()
    model = records.model_spec(scenario, splits).with_weights(sent)
    batches = plan.batches(partition_id, server_round, training)
    report = train_locally(model, splits.train, batches, training.lr)

    trained = model.state_dict()
    pipeline = DefensePipeline.from_components([(d.name, d.config) for d in scenario.defenses])
    delta = pipeline.apply({k: trained[k] - w for k, w in sent.items()}, scenario.seed, partition_id, server_round)
    reply = {k: w + delta[k] for k, w in sent.items()}
    metrics = MetricRecord({
        records.NUM_EXAMPLES: report.num_examples, records.PARTITION_ID: partition_id,
        records.LOCAL_STEPS: report.steps, records.LR: training.lr,
        records.BATCH_SIZE: training.batch_size, records.TRAIN_LOSS: report.mean_loss,
    })
    content = RecordDict({"arrays": ArrayRecord(reply), "metrics": metrics})
    return Message(content=content, reply_to=message)


def build_client_app(load_scenario: ScenarioLoader) -> ClientApp:
    """A ClientApp whose scenario comes from ``load_scenario(context)``."""
    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        return train(message, context, load_scenario(context))

    return app
