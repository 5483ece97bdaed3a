"""The evaluator's re-derived ground truth is exactly what the client trained on."""

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict

from fedleak.adversary.ground_truth import PlanTruth
from fedleak.client.training import train_locally
from fedleak.core import wire
from fedleak.data import build_plan, load_dataset
from fedleak.federation import client_app, records

from conftest import tiny_scenario


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch):
    # Messages are stamped with the running task's identity, which Flower sets when it
    # starts a run; set one here to build a message outside a run.
    from flwr.supercore.task_identity import TaskIdentity

    for key, value in {"_run_id": 1, "_task_id": 1, "_node_id": 1}.items():
        monkeypatch.setattr(TaskIdentity, key, value, raising=False)


def _client_reply(scenario, partition_id, server_round):
    splits = load_dataset(scenario.dataset)
    spec = scenario.model_spec(splits)
    sent = spec.build(seed=0).state_dict()
    config = records.training_record(scenario.training)
    config["server-round"] = server_round
    message = Message(RecordDict({"arrays": ArrayRecord(sent), "config": config}),
                      dst_node_id=5, message_type="train")
    context = Context(run_id=1, node_id=5, node_config={"partition-id": partition_id, "num-partitions": 4},
                      state=RecordDict(), run_config={})
    reply = client_app.train(message, context, scenario)
    return spec, sent, reply.content


@pytest.mark.parametrize("training", [{"batch_size": 3}, {"algorithm": "fedavg", "batch_size": 4, "local_steps": 3}])
def test_evaluator_ground_truth_is_what_the_client_used(training):
    scenario = tiny_scenario(training=training)
    spec, sent, content = _client_reply(scenario, partition_id=2, server_round=3)
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    truth = PlanTruth(splits.train, plan, scenario.training).ground_truth((2,), 3)
    assert content["metrics"][wire.NUM_EXAMPLES] == len(truth)

    # Re-train from the same weights on the evaluator's samples (in the plan's batch
    # order): the weights must equal the client's reply bit for bit.
    model = spec.with_weights(sent)
    train_locally(model, splits.train, plan.batches(2, 3, scenario.training), scenario.training.lr)
    replied = content["arrays"].to_torch_state_dict()
    for name, weight in model.state_dict().items():
        torch.testing.assert_close(replied[name], weight, rtol=0, atol=1e-7)
    used = {tuple(x.flatten().tolist()) for x in truth.images}
    first_batch = splits.train.images[torch.as_tensor(plan.batches(2, 3, scenario.training)[0])]
    assert {tuple(x.flatten().tolist()) for x in first_batch} <= used


def test_other_rounds_and_clients_train_on_other_samples():
    scenario = tiny_scenario(training={"batch_size": 3})
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    base = evaluator.ground_truth((0,), 1).images
    assert not torch.equal(base, evaluator.ground_truth((0,), 2).images)
    assert not torch.equal(base, evaluator.ground_truth((1,), 1).images)
