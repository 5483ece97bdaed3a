"""Defenses inside real Flower simulations: SecAgg+ on the legacy path, and every family at once."""

import json

import numpy as np
import pytest
import torch

from fedleak.client.local_round import local_round
from fedleak.data import load_dataset
from fedleak.federation import records, simulate
from fedleak.results.store import ResultStore, new_run_dir

from conftest import tiny_scenario


def test_secagg_aggregate_is_fedavg_while_masked_vectors_are_noise(tmp_path, captured):
    secagg = {"name": "secagg-plus"}
    scenario = tiny_scenario(partition={"num_clients": 3}, federation={"rounds": 1, "test_samples": 50},
                             defenses=[secagg], attacks=[{"name": "idlg", "iterations": 40},
                                                         {"name": "dlg", "iterations": 2}])
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))

    plain = tiny_scenario(partition={"num_clients": 3})
    sent = plain.model_spec(load_dataset(plain.dataset)).build(seed=plain.seed).state_dict()
    true = {p: local_round(plain, p, 1, plain.training, sent).arrays for p in range(3)}
    fedavg = {k: np.mean([true[p][k] for p in range(3)], axis=0) for k in sent}  # 1 example each

    aggregate = [u for u in captured if u.aggregate_of]
    masked = [u for u in captured if not u.aggregate_of]
    assert len(aggregate) == 1 and aggregate[0].aggregate_of == (0, 1, 2) and len(masked) == 3
    # SecAgg+ quantizes to steps of 2c/Q (c = 8, Q = 2²²); each client's weight n/max_weight is 1.
    step = 2 * 8.0 / 2**22
    error = max(float(np.abs(aggregate[0].client_weights[k].numpy() - fedavg[k]).max()) for k in sent)
    assert error <= step + 1e-6
    for update in masked:
        gap = np.concatenate([np.abs(update.client_weights[k].numpy() - true[update.partition_id][k]).ravel()
                              for k in sent])
        assert np.median(gap) > 1.0  # the masks make each vector look like uniform noise

    store = ResultStore.open_existing(run_dir)
    idlg = {r["partition_id"]: r for r in store.query("SELECT * FROM attack_results WHERE attack = 'idlg'")}
    assert set(idlg) == {-1, 0, 1, 2}
    # iDLG recovers these very updates unprotected (test_simulation: > 30 dB); masked, nothing leaks.
    assert all(idlg[p]["status"] == "ok" and idlg[p]["psnr"] < 12 for p in (0, 1, 2))
    dlg = store.query("SELECT * FROM attack_results WHERE attack = 'dlg' AND partition_id = -1")
    assert dlg[0]["status"] == "ok" and dlg[0]["num_ground_truth"] == 3  # the aggregate: one batch of 3


_PRIVATE = [{"name": "dp-sgd", "noise_multiplier": 0.5, "max_grad_norm": 1.0},
            {"name": "local-dp", "clip_norm": 1.0, "noise_multiplier": 0.01}]


# Flower runs SecAgg+ only on its legacy path, where neither a quantizer (Flower's mods
# need float weights) nor the Message API DP wrappers can join it: two federations.
@pytest.mark.parametrize("defenses", [
    [*_PRIVATE, {"name": "top-k", "keep": 0.5},
     {"name": "central-dp", "clipping": "server", "noise_multiplier": 0.1, "clip_norm": 1.0},
     {"name": "int8", "rounding": "stochastic"}],
    [*_PRIVATE, {"name": "prune", "fraction": 0.3}, {"name": "secagg-plus"}],
], ids=["message-api", "legacy-secagg"])
def test_every_defense_family_end_to_end(tmp_path, defenses):
    scenario = tiny_scenario(partition={"num_clients": 2}, federation={"rounds": 2, "test_samples": 50},
                             training={"batch_size": 2}, defenses=defenses,
                             attacks=[{"name": "dlg", "iterations": 3}])
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"
    rounds = store.query("SELECT round, epsilon, model_epsilon FROM rounds ORDER BY round")
    assert rounds[0]["epsilon"] is None and 0 < rounds[1]["epsilon"] < rounds[2]["epsilon"]
    assert all(r["model_epsilon"] <= r["epsilon"] for r in rounds[1:])
    results = store.query("SELECT * FROM attack_results WHERE partition_id >= 0")
    assert len(results) == 4 and all(r["status"] == "ok" and r["epsilon"] > 0 for r in results)
    for result in results:  # each stage stored with every key: the ones set, and the defaults
        stored = json.loads(result["defenses"])
        assert len(stored) == len(defenses) and all(d.items() <= s.items() for d, s in zip(defenses, stored))


def test_client_side_clipping_runs_flowers_mod(monkeypatch):
    from flwr.app import ArrayRecord, Context, Message, RecordDict
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM  # what the wrapper adds to the config
    from flwr.supercore.task_identity import TaskIdentity

    from fedleak.federation.client_app import build_client_app

    for key, value in {"_run_id": 1, "_task_id": 1, "_node_id": 1}.items():
        monkeypatch.setattr(TaskIdentity, key, value, raising=False)
    scenario = tiny_scenario(training={"lr": 50.0},  # a large step, so that clipping bites
                             defenses=[{"name": "central-dp", "clipping": "client", "clip_norm": 0.01}])
    sent = scenario.model_spec(load_dataset(scenario.dataset)).build(seed=0).state_dict()
    config = records.training_record(scenario.training)
    config["server-round"], config[KEY_CLIPPING_NORM] = 1, 0.01
    message = Message(RecordDict({"arrays": ArrayRecord(sent), "config": config}), dst_node_id=5,
                      message_type="train")
    context = Context(run_id=1, node_id=5, node_config={"partition-id": 0}, state=RecordDict(), run_config={})
    reply = build_client_app(lambda _: scenario)(message, context)
    received = reply.content["arrays"].to_torch_state_dict()
    norm = torch.sqrt(sum(((received[k] - sent[k]).double() ** 2).sum() for k in sent))
    assert float(norm) == pytest.approx(0.01, rel=1e-4)
