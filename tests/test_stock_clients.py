"""fedleak's own ServerApp with stock Flower clients: on the Message API path a stock client's
reply is aggregated with fedleak's clients' and attacked unscored; on the legacy SecAgg+ path
stock NumPyClients are rejected one by one and the aggregate is stored as not attacked — and
neither stops the federation."""

import sys

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from ray import cloudpickle

from fedleak.adversary.progress import Progress
from fedleak.federation import build_server_app, run_simulated
from fedleak.federation.client_app import train
from fedleak.results.store import ResultStore, new_run_dir

from conftest import tiny_scenario

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the simulated clients cannot import this module


def _stock_reply(msg: Message, metrics: dict) -> Message:
    """What Flower's quickstart client sends: the weights (moved a little) and its own metrics."""
    weights = {k: a.numpy() + np.asarray(0.01, a.numpy().dtype) for k, a in msg.content["arrays"].items()}
    arrays = ArrayRecord(array_dict={k: Array(a) for k, a in weights.items()})
    return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)}), reply_to=msg)


def _mixed_clients(scenario) -> ClientApp:
    """Partition 0: fedleak's honest client; 1: a stock client; 2: a stock client without num-examples."""
    app = ClientApp()

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if partition == 0:
            return train(msg, context, scenario)
        return _stock_reply(msg, {"train_loss": 2.0, "num-examples": 5} if partition == 1 else {"train_loss": 2.0})

    return app


def test_fedleaks_server_aggregates_a_stock_client_and_attacks_it_unscored(tmp_path):
    scenario = tiny_scenario(partition={"num_clients": 3}, federation={"rounds": 2, "test_samples": 50},
                             attacks=[{"name": "idlg", "iterations": 5}])
    run_dir = new_run_dir(tmp_path, scenario.name)
    run_simulated(build_server_app(lambda _: (scenario, run_dir), Progress()), scenario,
                  client_app=_mixed_clients(scenario))
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"
    updates = store.query("SELECT round, partition_id, status, reason, warning, lr, batch_digest FROM updates "
                          "ORDER BY round, partition_id")
    stock = [u for u in updates if u["status"] == "accepted" and u["partition_id"] != 0]
    rejected = [u for u in updates if u["status"] == "rejected"]
    # the stock clients are numbered after the plan's 3 partitions, the same number every round
    assert len(stock) == 2 and len({u["partition_id"] for u in stock}) == 1
    assert {u["partition_id"] for u in stock + rejected} == {3, 4}
    assert all(u["lr"] == scenario.training.lr and u["batch_digest"] is None
               and u["warning"].startswith("a stock client (no partition-id in its metrics)") for u in stock), stock
    assert len(rejected) == 2 and all("without a positive integer num-examples" in u["reason"] for u in rejected)
    attacks = {(a["round"], a["partition_id"]): a["status"]
               for a in store.query("SELECT round, partition_id, status FROM attack_results")}
    number = stock[0]["partition_id"]
    assert attacks == {(1, 0): "ok", (1, number): "unscored", (2, 0): "ok", (2, number): "unscored"}
    loss = store.query("SELECT test_loss FROM rounds WHERE round = 2")[0]["test_loss"]
    assert np.isfinite(loss)


class _StockNumPyClient(NumPyClient):
    def fit(self, parameters, config):
        return [p + np.asarray(0.01, p.dtype) for p in parameters], 1, {"train_loss": 2.0}


def test_stock_numpy_clients_under_secagg_are_rejected_and_the_aggregate_is_not_attacked(tmp_path):
    scenario = tiny_scenario(partition={"num_clients": 3}, federation={"rounds": 1, "test_samples": 50},
                             defenses=[{"name": "secagg-plus"}], attacks=[{"name": "idlg", "iterations": 5}])
    run_dir = new_run_dir(tmp_path, scenario.name)
    client_app = ClientApp(client_fn=lambda context: _StockNumPyClient().to_client(), mods=[secaggplus_mod])
    run_simulated(build_server_app(lambda _: (scenario, run_dir), Progress()), scenario, client_app=client_app)
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"  # FedAvg applied the aggregate
    rows = store.query("SELECT node_id, status, reason FROM updates")
    assert [r["status"] for r in rows] == ["rejected"] * 4
    masked = [r for r in rows if r["node_id"] != "-1"]
    assert len(masked) == 3 and all("partition-id must be an integer, got nothing" in r["reason"] for r in masked)
    aggregate = [r["reason"] for r in rows if r["node_id"] == "-1"]
    assert aggregate == ["the unmasked aggregate of 3 replies is not attacked: a contributor's partition-id must be "
                         "an integer, got nothing"]
    assert store.query("SELECT COUNT(*) AS n FROM attack_results")[0]["n"] == 0
