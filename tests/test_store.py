import sqlite3

import pytest
import torch

from fedleak.core.updates import ClientUpdate, UpdateMetadata
from fedleak.results.rows import AttackResult
from fedleak.results.store import ResultStore


def test_store_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    store.start_run("r1", "tiny", 'name = "tiny"\n')
    store.record_round("r1", 1, 0.5, 1.2)
    weights = {"w": torch.zeros(2)}
    update = ClientUpdate("r1", 1, 2**63 + 5, 0, weights, {"w": torch.ones(2)},
                          UpdateMetadata("fedsgd", 0.1, 1, 1, 1))
    store.record_update(update)
    result = AttackResult("r1", 1, 2**63 + 5, 0, "dlg", "ok", 1.5, metrics={"mse": 1e-4, "psnr": 40.0},
                          threat={"known_labels": False}, defenses=[{"name": "x"}], extras={"iterations": 3})
    image = store.save_grid("r1-p0-dlg", torch.rand(2, 1, 8, 8), torch.rand(1, 1, 8, 8))
    store.record_attack(result, image)
    store.record_attack(AttackResult("r1", 1, 7, 1, "idlg", "failed", 0.1, error="boom"))
    store.finish_run("r1")
    store.close()

    again = ResultStore.open_existing(tmp_path)
    assert again.query("SELECT status FROM runs")[0]["status"] == "finished"
    assert (tmp_path / "scenario.toml").read_text() == 'name = "tiny"\n'
    assert again.query("SELECT test_accuracy FROM rounds")[0]["test_accuracy"] == 0.5
    row = again.query("SELECT * FROM updates")[0]
    assert int(row["node_id"]) == 2**63 + 5 and row["update_norm"] == pytest.approx(2**0.5, rel=1e-12)
    ok, failed = again.query("SELECT * FROM attack_results ORDER BY id")
    assert ok["psnr"] == 40.0 and ok["defenses"] == '[{"name": "x"}]' and (tmp_path / ok["image"]).is_file()
    assert failed["status"] == "failed" and failed["error"] == "boom"


def test_a_database_from_before_label_counts_gains_the_columns_and_keeps_its_rows(tmp_path):
    old = sqlite3.connect(tmp_path / "results.sqlite")
    old.execute("CREATE TABLE updates (run_id TEXT, round INTEGER, node_id TEXT, partition_id INTEGER, "
                "algorithm TEXT, lr REAL, local_steps INTEGER, batch_size INTEGER, num_examples INTEGER, "
                "update_norm REAL, aggregate_of TEXT, epsilon REAL, model_epsilon REAL)")
    old.execute("CREATE TABLE attack_results (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, round INTEGER, "
                "node_id TEXT, partition_id INTEGER, attack TEXT, status TEXT, error TEXT, seconds REAL, mse REAL, "
                "psnr REAL, ssim REAL, label_accuracy REAL, success_rate REAL, num_reconstructed INTEGER, "
                "num_ground_truth INTEGER, threat TEXT, defenses TEXT, epsilon REAL, model_epsilon REAL, "
                "extras TEXT, image TEXT)")
    old.execute("INSERT INTO attack_results (run_id, attack, psnr) VALUES ('old', 'dlg', 12.5)")
    old.commit()
    old.close()
    store = ResultStore(tmp_path)  # the writer migrates; readers only read
    store.record_attack(AttackResult("new", 1, 1, 0, "dlg", "ok", 1.0, metrics={"label_count_accuracy": 0.5}))
    rows = store.query("SELECT run_id, psnr, label_count_accuracy FROM attack_results ORDER BY id")
    assert rows == [{"run_id": "old", "psnr": 12.5, "label_count_accuracy": None},
                    {"run_id": "new", "psnr": None, "label_count_accuracy": 0.5}]
    weights = {"w": torch.zeros(1)}
    store.record_update(ClientUpdate("new", 1, 1, 0, weights, weights, UpdateMetadata("fedsgd", 0.1, 1, 1, 1),
                                     crafted="random-query"))
    assert store.query("SELECT run_id, crafted FROM updates") == [{"run_id": "new", "crafted": "random-query"}]


def _rows(path, table):
    db = sqlite3.connect(path / "results.sqlite")  # another connection: sees only what was committed
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def _update(server_round, partition_id=0):
    weights = {"w": torch.zeros(2)}
    return ClientUpdate("r1", server_round, partition_id, partition_id, weights, {"w": torch.ones(2)},
                        UpdateMetadata("fedsgd", 0.1, 1, 1, 1))


def test_a_transaction_commits_once_when_the_outermost_ends_and_nothing_if_it_raises(tmp_path):
    store = ResultStore(tmp_path)
    store.start_run("r1", "tiny", "")
    with store.transaction():
        store.record_update(_update(1, 0))
        with store.transaction():
            store.record_update(_update(1, 1))
        assert _rows(tmp_path, "updates") == 0
    assert _rows(tmp_path, "updates") == 2
    with pytest.raises(RuntimeError), store.transaction():
        store.record_update(_update(2))
        raise RuntimeError("the round broke")
    assert _rows(tmp_path, "updates") == 2 and len(store.query("SELECT * FROM updates")) == 2


def test_reopening_a_stopped_run_removes_the_rows_of_its_unfinished_round_and_its_cancelled_attacks(tmp_path):
    store = ResultStore(tmp_path)
    store.start_run("r1", "tiny", "")
    for server_round in (1, 2, 3):
        store.record_round("r1", server_round, 0.5, 1.0)
        store.record_update(_update(server_round))
        store.record_attack(AttackResult("r1", server_round, 0, 0, "dlg", "ok", 1.0))
    store.record_attack(AttackResult("r1", 2, 0, 0, "idlg", "cancelled", 0.0, error="stopped"))
    store.finish_run("r1", "interrupted", "interrupted by SIGINT after round 2 of 5")
    store.reopen_run("r1", 2)
    assert [r["round"] for r in store.query("SELECT round FROM rounds ORDER BY round")] == [1, 2]
    assert [r["round"] for r in store.query("SELECT round FROM updates ORDER BY round")] == [1, 2]
    assert [(r["round"], r["attack"]) for r in store.query("SELECT round, attack FROM attack_results")] == \
        [(1, "dlg"), (2, "dlg")]
    assert store.query("SELECT status, error, finished FROM runs") == [
        {"status": "running", "error": None, "finished": None}]


def test_every_file_of_a_run_is_private_whatever_the_umask(tmp_path):
    import os

    from fedleak.results.store import new_run_dir

    previous = os.umask(0)
    try:
        run_dir = new_run_dir(tmp_path, "tiny")
        store = ResultStore(run_dir)
        store.start_run("r1", "tiny", 'name = "tiny"\n')
        store.record_update(_update(1))
        store.save_grid("r1-p0-dlg", torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
        modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.rglob("*")}
        store.close()
    finally:
        os.umask(previous)
    assert run_dir.stat().st_mode & 0o777 == 0o700 and modes.pop("images") == 0o700
    assert {"results.sqlite", "results.sqlite-wal", "scenario.toml", "r1-p0-dlg.png"} <= set(modes)
    assert set(modes.values()) == {0o600}
