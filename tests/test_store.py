import torch

from fedleak.evaluation import AttackResult
from fedleak.store import ResultStore
from fedleak.updates import ClientUpdate, UpdateMetadata


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
    assert int(row["node_id"]) == 2**63 + 5 and row["update_norm"] == 2**0.5
    ok, failed = again.query("SELECT * FROM attack_results ORDER BY id")
    assert ok["psnr"] == 40.0 and ok["defenses"] == '[{"name": "x"}]' and (tmp_path / ok["image"]).is_file()
    assert failed["status"] == "failed" and failed["error"] == "boom"
