"""A real Flower simulation (Ray backend): 2 clients, 2 rounds, end to end."""

from fedleak.federation import new_run_dir, simulate
from fedleak.store import ResultStore

from conftest import tiny_scenario


def test_two_clients_two_rounds_through_flower(tmp_path):
    scenario = tiny_scenario(
        partition={"num_clients": 2},
        federation={"rounds": 2, "test_samples": 100},
        capture={"rounds": [1]},
        attacks=[{"name": "idlg", "iterations": 40}],
    )
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario))
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
