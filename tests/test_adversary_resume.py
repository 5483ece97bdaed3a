"""The adversary's pending attacks: stored once, cancelled on a stop, re-run from captures on resume."""

import dataclasses

import pytest

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.data import build_plan, load_dataset
from fedleak.results.captures import CaptureStore
from fedleak.results.store import ResultStore
from fedleak.runners import AttackRunner, InlineRunner, execute

from conftest import fedsgd_update, tiny_scenario

SCENARIO = tiny_scenario(attacks=[{"name": "idlg", "iterations": 20}], partition={"num_clients": 2})


class HeldRunner(AttackRunner):
    """Keeps every submission until the test finishes it (a worker still busy at a stop)."""

    def __init__(self) -> None:
        self.held = []

    def submit(self, jobs, on_done):
        self.held.extend((job, on_done) for job in jobs)

    def finish_all(self):
        for job, on_done in self.held:
            on_done(execute(job))
        self.held = []


def _adversary(store, runner, scenario=SCENARIO):
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    return Adversary(scenario, scenario.model_spec(splits), evaluator, store, runner)


def _updates():
    """Round 1's updates of both clients, each from its own node (as Flower's are)."""
    return [dataclasses.replace(fedsgd_update(SCENARIO, p)[0], run_id="run", node_id=2**63 + p) for p in (0, 1)]


def _statuses(store):
    return sorted((r["partition_id"], r["status"]) for r in store.query("SELECT * FROM attack_results"))


def test_an_outcome_arriving_after_its_attack_was_cancelled_is_not_stored_twice(tmp_path):
    store, runner = ResultStore(tmp_path), HeldRunner()
    store.start_run("run", "tiny", "")
    adversary = _adversary(store, runner)
    adversary.observe_round(_updates(), 3)
    assert adversary.cancel_pending("cancelled: stopped") == 2
    runner.finish_all()  # the workers report after the stop
    assert _statuses(store) == [(0, "cancelled"), (1, "cancelled")]


def test_a_resumed_run_re_runs_from_the_captures_every_attack_that_has_no_result(tmp_path):
    store, runner = ResultStore(tmp_path), HeldRunner()
    store.start_run("run", "tiny", "")
    adversary = _adversary(store, runner)
    updates = _updates()
    adversary.observe_round(updates, 3)
    job, on_done = runner.held[0]
    on_done(execute(job))  # partition 0's attack finished; partition 1's was queued when the process died
    stopped_at = adversary.ledger.worst()
    assert (tmp_path / "captures" / "round-1.safetensors").is_file()

    store.reopen_run("run", 1)
    resumed = _adversary(store, InlineRunner())
    assert resumed.resume(1) == 1
    assert resumed.ledger.worst() == stopped_at  # the privacy ledger replayed from the stored updates
    resumed.submit([])
    assert _statuses(store) == [(0, "ok"), (1, "ok")]
    (row,) = store.query("SELECT psnr FROM attack_results WHERE partition_id = 1")
    assert row["psnr"] == _score_of_fresh_attack(updates[1], tmp_path)


def _score_of_fresh_attack(update, tmp_path):
    """The same attack on the same update in a fresh store: what the resumed run must reproduce."""
    store = ResultStore(tmp_path / "fresh")
    store.start_run("run", "tiny", "")
    _adversary(store, InlineRunner()).observe(update)
    return store.query("SELECT psnr FROM attack_results")[0]["psnr"]


@pytest.mark.parametrize(("store_policy", "kept"), [("attacked", 0), ("all", 2)])
def test_a_scenario_without_attacks_keeps_captures_only_under_store_all(tmp_path, store_policy, kept):
    scenario = tiny_scenario(partition={"num_clients": 2}, capture={"store": store_policy})
    store = ResultStore(tmp_path)
    store.start_run("run", "tiny", "")
    _adversary(store, InlineRunner(), scenario).observe_round(_updates(), 3)
    assert len(CaptureStore(tmp_path).read(1)) == kept
