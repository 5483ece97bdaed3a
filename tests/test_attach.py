"""fedleak attached to a user's own Flower app (examples/attach_to_your_app): under ``flwr run``
with the lab side channel, and under simulation with stock clients that misbehave."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import fedleak
from fedleak.adversary.metrics import score
from fedleak.attacks import ATTACKS
from fedleak.core.errors import FedleakError
from fedleak.federation import run_simulated
from fedleak.results.captures import CaptureStore
from fedleak.results.reconstructions import read_reconstruction
from fedleak.runners import AttackJob
from fedleak.runners.base import execute_batch

from conftest import tiny_scenario

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "attach_to_your_app"
sys.path.insert(0, str(EXAMPLE))
from attach_example.task import MEAN, STD, Digits, Net  # noqa: E402

pytestmark = pytest.mark.xdist_group("test_attach")  # its module fixture runs once, on one worker


def _rows(run_dir: Path, sql: str) -> list[sqlite3.Row]:
    db = sqlite3.connect(run_dir / "results.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _stop_processes_under(folder: Path) -> None:
    """Stop what ``flwr run`` left running for this FLWR_HOME (its local SuperLink), by PID."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(folder) in cmdline and int(proc.name) != os.getpid():
                try:
                    os.kill(int(proc.name), signal.SIGTERM)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    home, store = tmp_path_factory.mktemp("flwr-home"), tmp_path_factory.mktemp("runs")
    (home / "config.toml").write_text('[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = ":local:"\n'
                                      "options.num-supernodes = 2\n")
    try:
        done = subprocess.run(["flwr", "run", ".", "local", "--stream", "--run-config",
                               f"lab=true store='{store}' num-server-rounds=1"],
                              cwd=EXAMPLE, env={**os.environ, "FLWR_HOME": str(home)}, capture_output=True,
                              text=True, timeout=400)
    finally:
        _stop_processes_under(home)
    runs = list(store.iterdir())
    assert done.returncode == 0 and len(runs) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    return runs[0]


def test_the_example_under_flwr_run_with_the_lab_mod_scores_as_fedleaks_own_pipeline(lab_run):
    assert _rows(lab_run, "SELECT status FROM runs")[0]["status"] == "finished"
    results = _rows(lab_run, "SELECT * FROM attack_results ORDER BY partition_id")
    assert [r["status"] for r in results] == ["ok", "ok"]
    updates = CaptureStore(lab_run).read(1)
    assert len(updates) == 2 and all(u.reported is not None and len(u.reported.labels) == 1 for u in updates)
    # the sanity check ran first: the attacks' model of the client re-computes its update
    sanity = [r["sanity"] for r in _rows(lab_run, "SELECT sanity FROM updates")]
    assert len(sanity) == 2 and all(s.startswith("consistent: one SGD step re-computed") for s in sanity), sanity
    spec = fedleak.Scenario.model_validate({
        "model": {"name": "attach_example.task:Net"},
        "app": {"image_shape": [1, 8, 8], "num_classes": 10, "mean": list(MEAN), "std": list(STD)}}).app_model_spec()
    for row, update in zip(results, sorted(updates, key=lambda u: u.partition_id), strict=True):
        # fedleak's own pipeline on the same update and the same images: the attack, then the scores
        config = ATTACKS.get("idlg").Config.model_validate(json.loads(row["attack_config"]))
        without_truth = dataclasses.replace(update, reported=None)
        recon = execute_batch([AttackJob(without_truth, "idlg", config, spec)])[0].reconstruction
        own = score(recon.images, update.reported.images, recon.labels, update.reported.labels).summary()
        # equal within float tolerance: at an MSE of 1e-15 the PSNR's last dB is rounding noise
        assert row["mse"] == pytest.approx(own["mse"], abs=1e-10) and row["ssim"] == pytest.approx(own["ssim"], abs=1e-6)
        assert row["label_accuracy"] == own["label_accuracy"] == 1.0 and min(row["psnr"], own["psnr"]) > 60
        kept = read_reconstruction(lab_run, row["reconstruction"])
        assert torch.allclose(kept.images, recon.images, atol=1e-6)


def _lab_reply(msg: Message, digits: Digits, batch_size: int, reduction: str = "mean") -> Message:
    """A lab client's reply: one SGD step at the lr the server sent, on its first ``batch_size``
    samples (recorded for fedleak.client_mod), with the cross-entropy reduced by ``reduction``."""
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    data = fedleak.recorded(digits, MEAN, STD, image_key="img", label_key="label")
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=batch_size)))
    optimizer = torch.optim.SGD(net.parameters(), lr=msg.content["config"]["lr"])
    torch.nn.functional.cross_entropy(net(batch["img"]), batch["label"], reduction=reduction).backward()
    optimizer.step()
    metrics = MetricRecord({"train_loss": 1.0, "num-examples": batch_size})
    return Message(RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}), reply_to=msg)


def _stock_client_app() -> ClientApp:
    """Partition 0: a stock client (weights and Flower's metrics only); 1: NaN weights;
    2: a tensor of the wrong shape; 3: a client error; 4: a lab client summing its loss."""
    app = ClientApp(mods=[fedleak.client_mod])

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if partition == 3:
            raise RuntimeError("the client's disk is full")
        if partition == 4:  # summing its loss: not what the attacks model
            return _lab_reply(msg, Digits(4, 5), batch_size=3, reduction="sum")
        weights = {k: a.numpy().copy() for k, a in msg.content["arrays"].items()}
        weights["head.bias"] += 0.01
        if partition == 1:
            weights["head.bias"][0] = np.nan
        if partition == 2:
            weights["head.bias"] = np.zeros(3, dtype=np.float32)
        metrics = MetricRecord({"train_loss": 1.0, "num-examples": 5})
        arrays = ArrayRecord(array_dict={k: Array(a) for k, a in weights.items()})
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)

    return app


def test_stock_clients_that_misbehave_never_stop_the_users_federation(tmp_path):
    outcome = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        strategy = fedleak.attach(FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=5),
                                  model=Net, image_shape=(1, 8, 8), num_classes=10, store=tmp_path,
                                  mean=MEAN, std=STD, attacks=[{"name": "dlg", "iterations": 3}])
        initial = ArrayRecord(Net().state_dict())
        result = strategy.start(grid, initial, num_rounds=2, train_config=ConfigRecord({"lr": 0.5}))
        outcome["moved"] = float((result.arrays.to_torch_state_dict()["head.bias"]
                                  - initial.to_torch_state_dict()["head.bias"]).mean())
        outcome["run_dir"] = strategy.run_dir

    run_simulated(app, tiny_scenario(partition={"num_clients": 5}), client_app=_stock_client_app())
    run_dir = outcome["run_dir"]
    assert math.isfinite(outcome["moved"]) and outcome["moved"] != 0  # aggregated without the NaN and misshapen
    assert _rows(run_dir, "SELECT status FROM runs")[0]["status"] == "finished"
    replies = _rows(run_dir, "SELECT round, partition_id, status, reason, warning, lr, batch_size, sanity FROM updates "
                             "ORDER BY round, rowid")
    assert sorted(r["status"] for r in replies) == sorted(["accepted", "accepted", "rejected", "rejected", "failed"] * 2)
    reasons = " | ".join(r["reason"] or "" for r in replies)
    assert "non-finite" in reasons and "shape (3,)" in reasons and "client error" in reasons
    accepted = [r for r in replies if r["status"] == "accepted"]
    assert all(r["lr"] == 0.5 and "batch size unknown" in r["warning"] for r in accepted)
    stock, lab = [r for r in accepted if r["batch_size"] == 5], [r for r in accepted if r["batch_size"] == 3]
    assert len(stock) == len(lab) == 2 and all(r["sanity"] is None for r in stock)  # no samples reported: not checked
    # the lab client sums its loss over its 3 samples: the sanity check names it and the remedy
    assert all(r["sanity"].startswith("mismatch: loss reduction: the update is 3.00×") and "lr=1.5" in r["sanity"]
               for r in lab), [r["sanity"] for r in lab]
    attacks = _rows(run_dir, "SELECT partition_id, status, reconstruction, num_reconstructed, psnr FROM attack_results")
    lab_client = lab[0]["partition_id"]  # clients are numbered by the server, in the order it first sent to them
    assert sorted((a["partition_id"] == lab_client, a["status"]) for a in attacks) == [(False, "unscored")] * 2 + [
        (True, "ok")] * 2
    assert all((a["psnr"] is None) == (a["status"] == "unscored") and (run_dir / a["reconstruction"]).is_file()
               for a in attacks)
    shown = subprocess.run([sys.executable, "-m", "fedleak", "results", str(run_dir)], capture_output=True, text=True)
    assert "unscored" in shown.stdout and "batch size unknown" in shown.stdout
    assert "sanity checks: 2 mismatch" in shown.stdout and f"round 1, client {lab_client}: mismatch: loss reduction" in shown.stdout


def test_attach_refuses_bad_arguments_in_one_line(tmp_path):
    with pytest.raises(FedleakError, match=r"fedleak.attach: app.std"):
        fedleak.attach(FedAvg(), model=Net, image_shape=(1, 8, 8), num_classes=10, std=(0.0,), store=tmp_path)
    with pytest.raises(FedleakError, match="importable module"):
        fedleak.attach(FedAvg(), model=type("Local", (torch.nn.Module,), {"__module__": "__main__"}),
                       image_shape=(1, 8, 8), num_classes=10, store=tmp_path)
    with pytest.raises(FedleakError, match="attacks"):
        fedleak.attach(FedAvg(), model=Net, image_shape=(1, 8, 8), num_classes=10, attacks=["nope"], store=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_model_that_does_not_match_the_strategys_arrays_is_one_line_before_the_run(tmp_path):
    strategy = fedleak.attach(FedAvg(), model=Net, image_shape=(1, 8, 8), num_classes=10, store=tmp_path)
    arrays = Net().state_dict()
    arrays["head.weight"] = torch.zeros(3, 4)
    with pytest.raises(FedleakError, match="'head.weight' is \\(3, 4\\) there, \\(10, 512\\) in the model"):
        strategy.start(None, ArrayRecord(arrays))  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_fedleak_attack_re_attacks_an_attached_run_beside_its_own_results(lab_run, tmp_path):
    # the app's model must import in the re-attacking process: run from the app's folder (python -m puts it on the path)
    elsewhere = subprocess.run([sys.executable, "-m", "fedleak", "attack", str(lab_run), "--attack", "dlg"],
                               capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert elsewhere.returncode == 2 and len(elsewhere.stderr.strip().splitlines()) == 1, elsewhere.stderr
    assert "attach_example" in elsewhere.stderr
    done = subprocess.run([sys.executable, "-m", "fedleak", "attack", str(lab_run), "--attack", "dlg",
                           "--set", "iterations=20"], capture_output=True, text=True, cwd=EXAMPLE)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = _rows(lab_run, "SELECT attack, variant, status, psnr FROM attack_results ORDER BY attack")
    assert [(r["attack"], r["variant"], r["status"]) for r in rows] == [("dlg", "iterations=20", "ok")] * 2 + [
        ("idlg", None, "ok")] * 2
    assert all(r["psnr"] is not None for r in rows)  # scored against the samples the lab clients reported
    assert "dlg [iterations=20]" in done.stdout and "idlg" in done.stdout


def _lab_client_app() -> ClientApp:
    """Lab clients of the example's shape: one SGD step on 2 of their samples."""
    app = ClientApp(mods=[fedleak.client_mod])

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return _lab_reply(msg, Digits(int(context.node_config["partition-id"]), 2), batch_size=2)

    return app


def test_fedprox_inside_a_dp_wrapper_with_attacks_on_ray_is_captured_and_scored(tmp_path):
    from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedProx

    outcome = {}
    app = ServerApp()

    @app.main()
    def _main(grid: Grid, context: Context) -> None:
        inner = DifferentialPrivacyServerSideFixedClipping(
            FedProx(fraction_train=1.0, fraction_evaluate=0.0, proximal_mu=0.1), noise_multiplier=0.01,
            clipping_norm=10.0, num_sampled_clients=2)
        strategy = fedleak.attach(inner, model=Net, image_shape=(1, 8, 8), num_classes=10, mean=MEAN, std=STD,
                                  store=tmp_path, runner={"name": "ray", "workers": 1}, attacks=["idlg"])
        result = strategy.start(grid, ArrayRecord(Net().state_dict()), num_rounds=1,
                                train_config=ConfigRecord({"lr": 0.1}))
        outcome["run_dir"], outcome["result"] = strategy.run_dir, result

    run_simulated(app, tiny_scenario(partition={"num_clients": 2}), client_app=_lab_client_app())
    run_dir = outcome["run_dir"]
    assert _rows(run_dir, "SELECT status FROM runs")[0]["status"] == "finished"
    assert outcome["result"].arrays is not None  # the DP wrapper aggregated (clipped, noised) what was captured
    updates = _rows(run_dir, "SELECT status, lr, sanity FROM updates")
    assert [u["status"] for u in updates] == ["accepted"] * 2 and all(u["lr"] == 0.1 for u in updates)
    assert all(u["sanity"].startswith("consistent") for u in updates), updates
    attacks = _rows(run_dir, "SELECT status, label_accuracy FROM attack_results")
    assert [a["status"] for a in attacks] == ["ok"] * 2 and all(a["label_accuracy"] == 1.0 for a in attacks)
