"""Offline re-attacks (``fedleak attack``): stored captures attacked again, results beside the run's own."""

import dataclasses
import subprocess
import sys

import pytest

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.adversary.reattack import Selection, reattack
from fedleak.core.errors import FedleakError
from fedleak.data import build_plan, load_dataset
from fedleak.results.store import ResultStore
from fedleak.runners import InlineRunner

from conftest import fedsgd_update, tiny_scenario

SCENARIO = tiny_scenario(attacks=[{"name": "idlg", "iterations": 20}], partition={"num_clients": 2},
                         training={"batch_size": 1})


@pytest.fixture
def stored_run(tmp_path):
    """A run directory whose round 1 (both clients) was captured and attacked during the run."""
    store = ResultStore(tmp_path)
    store.start_run(tmp_path.name, "tiny", SCENARIO.to_toml())
    splits = load_dataset(SCENARIO.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, SCENARIO.dataset, SCENARIO.partition), SCENARIO.training)
    adversary = Adversary(SCENARIO, SCENARIO.model_spec(splits), evaluator, store, InlineRunner())
    updates = [dataclasses.replace(fedsgd_update(SCENARIO, p)[0], run_id=tmp_path.name, node_id=2**63 + p)
               for p in (0, 1)]
    adversary.observe_round(updates, 1)
    store.finish_run(tmp_path.name)
    store.close()
    return tmp_path


def _rows(run_dir):
    store = ResultStore.open_existing(run_dir)
    try:
        return store.query("SELECT partition_id, attack, variant, status, psnr, attack_config, image "
                           "FROM attack_results ORDER BY variant IS NOT NULL, variant, partition_id")
    finally:
        store.close()


def test_a_re_attack_adds_rows_labelled_with_its_settings_beside_the_runs_own(stored_run):
    summary = reattack(stored_run, "idlg", ["iterations=30"])
    assert (summary.updates, summary.variant, summary.replaced) == (2, "iterations=30", 0)
    assert summary.bytes_read == (stored_run / "captures" / "round-1.safetensors").stat().st_size
    rows = _rows(stored_run)
    assert [(r["partition_id"], r["variant"], r["status"]) for r in rows] == [
        (0, None, "ok"), (1, None, "ok"), (0, "iterations=30", "ok"), (1, "iterations=30", "ok")]
    assert '"iterations": 30' in rows[2]["attack_config"] and '"iterations": 20' in rows[0]["attack_config"]
    assert rows[2]["image"] != rows[0]["image"] and (stored_run / rows[2]["image"]).is_file()  # not overwritten


def test_the_same_settings_score_what_the_run_scored_and_a_repeat_replaces_its_rows(stored_run):
    reattack(stored_run, "idlg", ["iterations=20"])  # the scenario's own settings
    again = reattack(stored_run, "idlg", ["iterations=20"])
    assert again.replaced == 2
    rows = _rows(stored_run)
    assert len(rows) == 4
    assert [r["psnr"] for r in rows[:2]] == [r["psnr"] for r in rows[2:]]  # same attack, same seed: same score


def test_a_selection_attacks_only_the_named_clients_and_an_empty_one_is_refused(stored_run):
    assert reattack(stored_run, "dlg", [], Selection(partitions={1})).updates == 1
    assert [(r["partition_id"], r["attack"], r["variant"]) for r in _rows(stored_run)][2:] == [(1, "dlg", "offline")]
    with pytest.raises(FedleakError, match=r"round 3 is not among the rounds stored \(1\)$"):
        reattack(stored_run, "dlg", [], Selection(rounds={3}))


def test_bad_settings_and_a_directory_without_captures_are_one_line_errors_storing_nothing(stored_run, tmp_path_factory):
    with pytest.raises(FedleakError, match=r"--attack idlg: attacks\[0\]\.iterationz: Extra inputs"):
        reattack(stored_run, "idlg", ["iterationz=5"])
    with pytest.raises(FedleakError, match="unknown attack|not registered|no attack"):
        reattack(stored_run, "no-such-attack")
    assert len(_rows(stored_run)) == 2
    with pytest.raises(FedleakError, match="not a run directory"):
        reattack(tmp_path_factory.mktemp("empty"), "idlg")


def test_fedleak_attack_prints_the_new_rows_in_the_runs_table(stored_run):
    done = subprocess.run([sys.executable, "-m", "fedleak", "attack", str(stored_run), "--attack", "idlg",
                           "--set", "iterations=25", "--client", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "attacked 1 stored updates as 'idlg [iterations=25]'" in done.stdout
    assert "│ idlg [iterations=25] │" in done.stdout  # the table labels the new rows
    assert "2 updates" in done.stdout and "per update" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "fedleak", "attack", str(stored_run), "--attack", "idlg",
                          "--set", "iterations=-1"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
