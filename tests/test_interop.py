"""fedleak's Flower components beside stock ones: its ClientApp under a stock FedAvg ServerApp,
its apps' run config defaults, the train config a stock server sends."""

import re
from pathlib import Path

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedleak.core.config import TrainingConfig
from fedleak.core.errors import FedleakError
from fedleak.data import load_dataset
from fedleak.federation import records, run_simulated
from fedleak.federation.run_config import (
    DEFAULT_SCENARIO,
    OUT_BASE_VARIABLE,
    ScenarioRejected,
    out_dir_from_run_config,
    run_from_run_config,
    scenario_from_run_config,
)
from fedleak.results.store import ResultStore

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
    from fedleak.federation.client_app import evaluate

    scenario = tiny_scenario()
    content = RecordDict({"arrays": ArrayRecord(scenario.model_spec(load_dataset(scenario.dataset))
                                                .build(seed=0).state_dict())})
    message = Message(content=content, dst_node_id=1, message_type="evaluate")
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    with pytest.raises(FedleakError, match="partition-id"):
        evaluate(message, context, scenario)


def _context(**run_config) -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=run_config)


def test_the_run_configs_set_key_reaches_what_fedleak_run_set_does():
    context = _context(set="training.lr=0.05; federation.rounds=2 ;model.name='mlp'")
    scenario = scenario_from_run_config(context, REPO)
    assert (scenario.training.lr, scenario.federation.rounds, scenario.model.name) == (0.05, 2, "mlp")


def test_a_relative_out_dir_lands_under_the_documented_base(tmp_path, monkeypatch):
    monkeypatch.setenv(OUT_BASE_VARIABLE, str(tmp_path / "volume"))
    assert out_dir_from_run_config(_context(**{"out-dir": "runs"})) == tmp_path / "volume" / "runs"
    assert out_dir_from_run_config(_context(**{"out-dir": str(tmp_path / "abs")})) == tmp_path / "abs"
    monkeypatch.delenv(OUT_BASE_VARIABLE)
    monkeypatch.chdir(tmp_path)
    assert out_dir_from_run_config(_context()) == tmp_path / "runs"


@pytest.mark.parametrize(("run_config", "line"), [
    ({"set": "training.lrr=1"}, "training.lrr: Extra inputs are not permitted"),
    ({"set": "training.lr"}, "run config 'set' expects key=value, got 'training.lr'"),
    ({"scenario": "scenarios/none.toml"}, "none.toml"),
])
def test_a_rejected_scenario_is_one_line_and_a_failed_run_directory(tmp_path, caplog, run_config, line):
    (tmp_path / "runs").mkdir()
    earlier = tmp_path / "runs" / "earlier-run"
    earlier.mkdir()
    with pytest.raises(ScenarioRejected, match=re.escape(line)):
        run_from_run_config(_context(**run_config, **{"out-dir": str(tmp_path / "runs")}), REPO)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(logged) == 1 and line in logged[0] and "\n" not in logged[0]
    stored = [d for d in (tmp_path / "runs").iterdir() if d != earlier]
    assert earlier.is_dir() and len(stored) == 1 and stored[0].name.startswith("rejected-")
    store = ResultStore.open_existing(stored[0])
    assert store.query("SELECT status, error FROM runs")[0]["status"] == "failed"
    assert line in store.query("SELECT error FROM runs")[0]["error"]


def test_a_client_refuses_a_server_that_runs_other_fedleak_code():
    from fedleak.core.fingerprint import code_fingerprint

    own = TrainingConfig()
    sent = dict(records.training_record(own))
    assert sent["fedleak-code"] == code_fingerprint() and records.training_from_record(sent, own) == own
    with pytest.raises(FedleakError, match=r"^fedleak code differs: the server runs 0\.0\.9\+abc, this client 0\.1"):
        records.training_from_record({**sent, "fedleak-code": "0.0.9+abc"}, own)
    assert records.training_from_record({"lr": 0.5}, own).lr == 0.5  # a stock server sends none: not checked
