"""The runner boundary: what an attack returns is checked, what it needs is enforced before
it runs, the model it is handed is left alone, and batch time is shared out truthfully."""

import time

import pytest
import torch

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks import ATTACKS, Attack, AttackNotApplicable, Budget, Reconstruction
from fedleak.attacks.devices import DeviceConfig
from fedleak.data import build_plan, load_dataset
from fedleak.results.store import ResultStore
from fedleak.runners import AttackJob, InlineRunner, execute_batch

from conftest import fedsgd_update, on_test_device, tiny_scenario

SHIPPED = ["analytic", "dlg", "grnn", "idlg", "inverting", "kkt", "linear", "tensor"]
FEW_STEPS = {"dlg": {"iterations": 2}, "idlg": {"iterations": 2}, "inverting": {"iterations": 2},
             "grnn": {"iterations": 2}, "kkt": {"iterations": 2}, "linear": {"correction_iterations": 2},
             "tensor": {"starts": 1, "power_steps": 2, "refinement_iterations": 0}}


@ATTACKS.register("test-wrong-shape")
class _WrongShape(Attack):
    """Returns an image of the wrong size for partition 1, a good one otherwise."""

    def run(self, update, model, budget):
        size = 3 if update.partition_id == 1 else model.image_shape[-1]
        return Reconstruction(torch.full((1, 1, size, size), 0.5), torch.tensor([0]), 0.0)


@ATTACKS.register("test-unscorable")
class _Unscorable(Attack):
    """A reconstruction within the contract (the test makes scoring it fail)."""

    def run(self, update, model, budget):
        return Reconstruction(torch.rand(1, *model.image_shape), None, 0.0, extras={"steps": 1})


@ATTACKS.register("test-slow-picky")
class _SlowPicky(Attack):
    """Batched; sleeps 0.3 s per call and fails any batch that holds partition 1."""

    @classmethod
    def batch_key(cls, update):
        return update.server_round

    def run_batch(self, updates, model, budget):
        time.sleep(0.3)
        if any(update.partition_id == 1 for update in updates):
            raise AttackNotApplicable("partition 1")
        return [Reconstruction(torch.rand(1, *model.image_shape), None, 0.0, {"budget": budget.seconds})
                for _ in updates]

    def run(self, update, model, budget):
        return self.run_batch([update], model, budget)[0]


def _adversary(tmp_path, scenario):
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    return Adversary(scenario, scenario.model_spec(splits), evaluator, store, InlineRunner()), store


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {p.device for p in model.parameters()}, [p.requires_grad for p in model.parameters()], model.training)


@pytest.mark.parametrize("name", SHIPPED)
def test_no_shipped_attack_changes_the_model_it_is_given(name):
    scenario = tiny_scenario(model={"name": "mlp", "widths": [16]})
    update, spec = fedsgd_update(scenario)
    model = spec.with_weights(update.global_weights)
    before = _snapshot(model)
    try:
        config = ATTACKS.get(name).Config(**on_test_device(name, **FEW_STEPS.get(name, {})))
        ATTACKS.get(name)(config).run(update, model, Budget(5.0))
    except AttackNotApplicable:
        pass  # whether it applies is beside the point: it must leave the model as it was
    weights, devices, grads, training = _snapshot(model)
    assert all(torch.equal(weights[k], v) for k, v in before[0].items())
    assert (devices, grads, training) == before[1:]


@pytest.mark.parametrize("name", ["idlg", "grnn", "kkt"])  # stacked, one attempt per restart, its own loop
def test_an_attack_moving_to_another_device_moves_a_copy(name, monkeypatch):
    update, spec = fedsgd_update(tiny_scenario(model={"name": "mlp", "widths": [16]}))
    model = spec.with_weights(update.global_weights)
    moved = []
    monkeypatch.setattr(DeviceConfig, "torch_device", lambda self: moved.append(name) or torch.device("meta"))
    with pytest.raises(Exception):  # noqa: B017 - the meta device computes no values; only the move matters
        ATTACKS.get(name)(ATTACKS.get(name).Config(iterations=1)).run(update, model, Budget())
    assert moved == [name] and {p.device.type for p in model.parameters()} == {"cpu"}


def test_a_reconstruction_that_breaks_the_contract_fails_alone():
    scenario = tiny_scenario()
    updates = [fedsgd_update(scenario, partition_id=p)[0] for p in range(3)]
    spec = fedsgd_update(scenario)[1]
    outcomes = execute_batch([AttackJob(u, "test-wrong-shape", _WrongShape.Config(), spec) for u in updates])
    assert [o.status for o in outcomes] == ["ok", "failed", "ok"]
    assert outcomes[1].error == "broke the attack contract: images of shape (1, 1, 3, 3), expected (B ≥ 1, 1, 8, 8)"


@pytest.mark.parametrize(("images", "labels", "extras", "problem"), [
    (torch.rand(0, 1, 8, 8), None, {}, "images of shape (0, 1, 8, 8)"),
    (torch.rand(2, 8, 8), None, {}, "images of shape (2, 8, 8)"),
    (torch.full((1, 1, 8, 8), float("nan")), None, {}, "not finite"),
    (torch.full((1, 1, 8, 8), 1.5), None, {}, "expected [0, 1]"),
    (torch.rand(2, 1, 8, 8), torch.tensor([1]), {}, "labels must be 2 integers"),
    (torch.rand(1, 1, 8, 8), torch.tensor([0.5]), {}, "labels must be 1 integers"),
    (torch.rand(1, 1, 8, 8), torch.tensor([10]), {}, "labels outside 0..9"),
    (torch.rand(1, 1, 8, 8), None, {"tensor": torch.zeros(1)}, "extras are not JSON-serialisable"),
])
def test_the_contract_names_what_is_wrong(images, labels, extras, problem):
    violation = Reconstruction(images, labels, 0.0, extras).violation((1, 8, 8), 10)
    assert violation is not None and problem in violation
    assert Reconstruction(torch.rand(2, 1, 8, 8), torch.tensor([0, 9]), 0.0, {"a": [1.0]}).violation((1, 8, 8), 10) \
        is None


def test_an_attack_whose_requirement_is_not_met_is_stored_not_applicable_and_never_run(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(ATTACKS.get("tensor"), "run", lambda *args: ran.append(args))
    scenario = tiny_scenario(model={"name": "mlp", "widths": [16]}, attacks=[{"name": "tensor"}],
                             capture={"clients": [0]})
    adversary, store = _adversary(tmp_path, scenario)
    adversary.observe(fedsgd_update(scenario)[0])  # an honest round: no random query was sent
    row = store.query("SELECT status, error FROM attack_results")[0]
    assert row == {"status": "not applicable",
                   "error": 'needs an update from a random-parameter query round ([crafting] name = "random-query")'}
    assert ran == []


def test_scoring_and_storing_failures_are_stored_as_failed_rows(tmp_path, monkeypatch):
    scenario = tiny_scenario(attacks=[{"name": "test-unscorable"}, {"name": "test-wrong-shape"}],
                             capture={"clients": [0]})
    adversary, store = _adversary(tmp_path, scenario)
    monkeypatch.setattr(store, "save_grid", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    adversary.observe(fedsgd_update(scenario)[0])
    rows = {r["attack"]: r for r in store.query("SELECT attack, status, error FROM attack_results")}
    assert rows["test-unscorable"]["status"] == "failed"
    assert rows["test-unscorable"]["error"] == "scoring failed: OSError: disk full"
    assert rows["test-wrong-shape"]["status"] == "failed"  # the same fault, reported per attack


def test_the_halves_of_a_failing_batch_share_its_deadline_and_each_result_its_share_of_time():
    scenario = tiny_scenario()
    updates = [fedsgd_update(scenario, partition_id=p)[0] for p in range(4)]
    spec = fedsgd_update(scenario)[1]
    config = _SlowPicky.Config(time_budget_s=10.0)
    outcomes = execute_batch([AttackJob(u, "test-slow-picky", config, spec) for u in updates])
    assert [o.status for o in outcomes] == ["ok", "not applicable", "ok", "ok"]
    # Batch of 4 fails (0.3 s), halves [0, 1] fail and [2, 3] succeed, then [0] and [1]: each later
    # attempt got what was left of the one 10 s budget, not a fresh 10 s.
    budgets = [o.reconstruction.extras["budget"] for o in outcomes if o.reconstruction is not None]
    assert all(b < 10.0 - 0.55 for b in budgets)
    ok = [o for o in outcomes if o.status == "ok"]
    assert ok[1].batch_size == ok[2].batch_size == 2 and ok[0].batch_size == 1
    assert ok[1].seconds == pytest.approx(ok[1].batch_seconds / 2)
    assert ok[0].seconds == pytest.approx(ok[0].batch_seconds)


@ATTACKS.register("test-precision")
class _Precision(Attack):
    """Records the TF32 flags it runs under; fails on partition 1."""

    seen: list[tuple[bool, bool]] = []

    def run(self, update, model, budget):
        self.seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        if update.partition_id == 1:
            raise RuntimeError("after recording")
        return Reconstruction(torch.rand(1, *model.image_shape), None, 0.0)


def test_attacks_run_in_ieee_float32_and_the_process_gets_its_own_settings_back(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    _Precision.seen.clear()
    for partition in (0, 1):  # one that returns, one that raises
        update, spec = fedsgd_update(tiny_scenario(), partition_id=partition)
        execute_batch([AttackJob(update, "test-precision", _Precision.Config(), spec)])
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
    assert _Precision.seen == [(False, False), (False, False)]
