"""fedleak's Flower components beside stock ones: its ClientApp under a stock FedAvg ServerApp,
its apps' run config defaults, the train config a stock server sends."""

from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.core.config import TrainingConfig
from fedleak.core.errors import FedleakError
from fedleak.data import load_dataset
from fedleak.federation import records, run_simulated
from fedleak.federation.app_config import DEFAULT_SCENARIO, scenario_from_run_config

from conftest import tiny_scenario

REPO = Path(__file__).resolve().parents[1]


def test_a_stock_servers_train_config_is_completed_from_the_clients_scenario():
    own = TrainingConfig(algorithm="fedavg", lr=0.2, batch_size=4, local_steps=3)
    assert records.training_from_record({"server-round": 1, "lr": 0.05}, own) == own.model_copy(update={"lr": 0.05})
    assert records.training_from_record({"server-round": 1}, own) == own


def test_a_bad_train_config_names_every_bad_key_in_one_line():
    with pytest.raises(FedleakError) as error:
        records.training_from_record({"lr": -1.0, "batch-size": "four"}, TrainingConfig())
    message = str(error.value)
    assert "\n" not in message and "'lr'" in message and "'batch-size'" in message


def test_the_app_components_fall_back_to_the_documented_scenario_without_a_run_config():
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    assert scenario_from_run_config(context, REPO).name == "quickstart"
    assert (REPO / DEFAULT_SCENARIO).is_file()


def test_fedleaks_clients_train_and_evaluate_under_a_stock_fedavg_server():
    scenario = tiny_scenario(partition={"num_clients": 2}, federation={"rounds": 1})
    outcome = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        initial = scenario.model_spec(load_dataset(scenario.dataset)).build(seed=0).state_dict()
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_available_nodes=2)
        result = strategy.start(grid, ArrayRecord(initial), num_rounds=1, train_config=ConfigRecord({"lr": 0.05}))
        outcome["train"] = dict(result.train_metrics_clientapp[1])
        outcome["evaluate"] = dict(result.evaluate_metrics_clientapp[1])
        outcome["moved"] = any((result.arrays.to_torch_state_dict()[k] != w).any() for k, w in initial.items())

    run_simulated(app, scenario)
    assert outcome["moved"] and outcome["train"]["lr"] == pytest.approx(0.05)
    assert 0 <= outcome["evaluate"]["eval_acc"] <= 1 and outcome["evaluate"]["eval_loss"] > 0


def test_the_evaluate_handler_rejects_a_node_without_a_partition_id():
    from fedleak.federation.client import evaluate

    scenario = tiny_scenario()
    content = RecordDict({"arrays": ArrayRecord(scenario.model_spec(load_dataset(scenario.dataset))
                                                .build(seed=0).state_dict())})
    message = Message(content=content, dst_node_id=1, message_type="evaluate")
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(FedleakError, match="partition-id"):
        evaluate(message, context, scenario)
