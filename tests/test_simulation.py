"""A real Flower simulation (Ray backend): 2 clients, 2 rounds, end to end."""

import json

import torch

from fedleak.crafting.random_query import random_query_weights
from fedleak.data import load_dataset
from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir

from conftest import tiny_scenario


def test_two_clients_two_rounds_through_flower(tmp_path):
    scenario = tiny_scenario(
        partition={"num_clients": 2},
        federation={"rounds": 2, "test_samples": 100},
        capture={"rounds": [1]},
        attacks=[{"name": "idlg", "iterations": 40}],
    )
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"
    assert [r["round"] for r in store.query("SELECT round FROM rounds ORDER BY round")] == [0, 1, 2]
    updates = store.query("SELECT round, partition_id FROM updates ORDER BY round, partition_id")
    assert [(u["round"], u["partition_id"]) for u in updates] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    attacks = store.query("SELECT * FROM attack_results")
    assert len(attacks) == 2 and all(a["round"] == 1 for a in attacks)
    assert all(a["status"] == "ok" and a["psnr"] > 30 and a["label_accuracy"] == 1.0 for a in attacks)
    assert all((run_dir / a["image"]).is_file() for a in attacks)
    assert (run_dir / "scenario.toml").is_file()


def test_a_random_query_round_is_sent_recorded_attacked_and_leaves_the_global_model_alone(tmp_path, captured):
    scenario = tiny_scenario(
        model={"name": "mlp", "widths": [1000]}, partition={"num_clients": 2}, training={"batch_size": 2},
        federation={"rounds": 2, "test_samples": 100}, capture={"rounds": [1]}, attacks=[{"name": "tensor"}],
        threat={"server": "malicious"}, crafting={"name": "random-query", "rounds": [1]},
    )
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    spec = scenario.model_spec(load_dataset(scenario.dataset))
    crafted = random_query_weights(spec, seed=1)  # seed·1_000_003 + round
    sent = {u.server_round: u.global_weights for u in captured}
    assert all(torch.equal(sent[1][name], crafted[name]) for name in crafted)
    assert not torch.equal(sent[2]["layers.1.weight"], crafted["layers.1.weight"])

    store = ResultStore.open_existing(run_dir)
    loss = {r["round"]: r["test_loss"] for r in store.query("SELECT round, test_loss FROM rounds")}
    assert loss[1] == loss[0] != loss[2]  # the query round's aggregate was discarded; round 2 trained
    updates = store.query("SELECT round, crafted FROM updates ORDER BY round")
    assert [(u["round"], u["crafted"]) for u in updates] == [(1, "random-query")] * 2 + [(2, None)] * 2
    attacks = store.query("SELECT * FROM attack_results")
    assert len(attacks) == 2 and all(a["crafted"] == "random-query" and a["status"] == "ok" for a in attacks)
    assert all(a["psnr"] > 30 and a["label_accuracy"] == 1.0 for a in attacks)
    run = store.query("SELECT risk_index, audit FROM runs")[0]
    assert run["risk_index"] == 0.0 and len(json.loads(run["audit"])["layers"]) == 2
