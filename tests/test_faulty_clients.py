"""Fault injection through a real Flower simulation (Ray backend): clients that crash, send
NaN, a truncated tensor, a lying partition id or float64 weights are stored as failed or
rejected, the honest client's updates are aggregated and attacked, and the run goes on;
a run in which no client trains ends failed."""

import math
import sys

import numpy as np
from flwr.app import Array, Context, Message
from flwr.clientapp import ClientApp
from ray import cloudpickle

from fedleak.adversary.progress import Progress
from fedleak.core import wire
from fedleak.federation import build_server_app, run_simulated
from fedleak.federation.client_app import train
from fedleak.results.store import ResultStore, new_run_dir

from conftest import tiny_scenario

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the simulated clients cannot import this module


def _first_array(content, change):
    name = sorted(content["arrays"])[0]
    content["arrays"][name] = change(content["arrays"][name])


FAULTS = {  # partition id → what its client does to fedleak's honest reply (0 is honest)
    2: lambda content: _first_array(content, lambda a: Array(np.full(a.shape, np.nan, dtype=np.float32))),
    3: lambda content: _first_array(content, lambda a: Array(dtype=a.dtype, shape=a.shape, stype=a.stype,
                                                             data=a.data[:-4])),
    4: lambda content: content["metrics"].__setitem__(wire.PARTITION_ID, 99),
    5: lambda content: _first_array(content, lambda a: Array(a.numpy().astype(np.float64))),
}
REASONS = {1: "client error:", 2: "holds non-finite values", 3: "cannot decode its arrays",
           4: "partition-id 99 is not a partition", 5: "is torch.float64"}


def _faulty_clients(scenario, crash=(1,)) -> ClientApp:
    app = ClientApp()

    @app.train()
    def _train(message: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if partition in crash:
            raise RuntimeError("this client's data is gone")
        reply = train(message, context, scenario)
        FAULTS.get(partition, lambda content: None)(reply.content)
        return reply

    return app


def _run(tmp_path, scenario, client_app):
    run_dir = new_run_dir(tmp_path, scenario.name)
    run_simulated(build_server_app(lambda _: (scenario, run_dir), Progress()), scenario, client_app=client_app)
    return ResultStore.open_existing(run_dir)


def test_bad_clients_are_stored_and_left_out_while_the_federation_goes_on(tmp_path):
    scenario = tiny_scenario(partition={"num_clients": 6}, federation={"rounds": 2, "test_samples": 100},
                             attacks=[{"name": "idlg", "iterations": 5}], capture={"rounds": [1]})
    store = _run(tmp_path, scenario, _faulty_clients(scenario))
    assert store.query("SELECT status, error FROM runs")[0] == {"status": "finished", "error": None}
    rows = store.query("SELECT round, partition_id, status, reason FROM updates ORDER BY round, status")
    for server_round in (1, 2):
        mine = [r for r in rows if r["round"] == server_round]
        assert [r["partition_id"] for r in mine if r["status"] == "accepted"] == [0]
        reasons = sorted(r["reason"] for r in mine if r["status"] != "accepted")
        assert len(reasons) == 5 and all(any(text in reason for reason in reasons) for text in REASONS.values())
        assert sum(r["status"] == "failed" for r in mine) == 1
    losses = [r["test_loss"] for r in store.query("SELECT test_loss FROM rounds ORDER BY round")]
    assert len(losses) == 3 and all(loss is not None and math.isfinite(loss) for loss in losses)  # the model stays finite
    assert [r["partition_id"] for r in store.query("SELECT partition_id FROM attack_results")] == [0]


def test_a_run_in_which_no_client_trains_ends_failed(tmp_path):
    scenario = tiny_scenario(partition={"num_clients": 2}, federation={"rounds": 2, "test_samples": 50})
    store = _run(tmp_path, scenario, _faulty_clients(scenario, crash=(0, 1)))
    run = store.query("SELECT status, error FROM runs")[0]
    assert run["status"] == "failed"
    assert run["error"].startswith("round 1: no reply was accepted (2 of 2 rejected or failed; the first: client error:")
    assert [r["status"] for r in store.query("SELECT status FROM updates")] == ["failed", "failed"]
    assert [r["round"] for r in store.query("SELECT round FROM rounds")] == [0]  # round 2 never started
