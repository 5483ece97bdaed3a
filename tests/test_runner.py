"""A failing attack is stored as failed; the others and the run go on."""

import json

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks import ATTACKS, Attack
from fedleak.data import build_plan, load_dataset
from fedleak.results.store import ResultStore
from fedleak.runners import AttackJob, InlineRunner, execute

from conftest import fedsgd_update, on_test_device, tiny_scenario


@ATTACKS.register("test-crash")
class _Crash(Attack):
    def run(self, update, model, budget):
        raise RuntimeError("simulated attack bug")


def test_execute_turns_a_crash_into_a_failed_outcome():
    update, spec = fedsgd_update(tiny_scenario())
    outcome = execute(AttackJob(update, "test-crash", _Crash.Config(), spec))
    assert outcome.reconstruction is None
    assert outcome.error.startswith("RuntimeError: simulated attack bug")


def test_adversary_stores_failures_and_successes(tmp_path):
    scenario = tiny_scenario(attacks=[{"name": "test-crash"}, {"name": "analytic"}, {"name": "idlg", **on_test_device("idlg", iterations=30)}],
                             capture={"clients": [0]})
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    update, spec = fedsgd_update(scenario, partition_id=0)
    adversary = Adversary(scenario, spec, evaluator, store, InlineRunner())
    adversary.observe(update)
    adversary.observe(fedsgd_update(scenario, partition_id=1)[0])  # recorded, not attacked
    rows = {r["attack"]: r for r in store.query("SELECT * FROM attack_results")}
    assert rows["test-crash"]["status"] == "failed" and "simulated attack bug" in rows["test-crash"]["error"]
    assert rows["analytic"]["status"] == "not applicable" and "fully-connected layer" in rows["analytic"]["error"]
    assert rows["idlg"]["status"] == "ok" and rows["idlg"]["psnr"] > 30
    assert len(store.query("SELECT * FROM updates")) == 2


def test_known_labels_capability_hands_the_true_labels_to_the_attack(tmp_path):
    scenario = tiny_scenario(attacks=[{"name": "dlg", **on_test_device("dlg", iterations=1)}], threat={"known_labels": True},
                             training={"batch_size": 2})
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    update, spec = fedsgd_update(scenario)
    Adversary(scenario, spec, evaluator, store, InlineRunner()).observe(update)
    row = store.query("SELECT label_accuracy, threat FROM attack_results")[0]
    assert row["label_accuracy"] == 1.0 and '"known_labels": true' in row["threat"]


def test_every_optimisation_attack_runs_on_a_fedavg_update_and_stores_how_far_it_got(tmp_path):
    scenario = tiny_scenario(
        training={"algorithm": "fedavg", "local_steps": 2, "batch_size": 2},
        attacks=[{"name": "idlg", **on_test_device("idlg", iterations=1)},
                 {"name": "inverting", **on_test_device("inverting", iterations=5, restarts=2)},
                 {"name": "grnn", **on_test_device("grnn", iterations=5, time_budget_s=30)}],
    )
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    update, spec = fedsgd_update(scenario)
    assert update.metadata.local_steps == 2 and update.metadata.num_examples == 4
    Adversary(scenario, spec, evaluator, store, InlineRunner()).observe(update)
    rows = {r["attack"]: r for r in store.query("SELECT * FROM attack_results")}
    assert all(r["status"] == "ok" and r["num_reconstructed"] == 4 for r in rows.values())
    assert rows["idlg"]["label_count_accuracy"] == 1.0  # counts inferred from the pseudo-gradient
    inverting = json.loads(rows["inverting"]["extras"])
    assert (inverting["iterations"], inverting["iterations_planned"], inverting["restarts"]) == (5, 5, 2)
    assert json.loads(rows["grnn"]["extras"])["stopped_by_budget"] is False
