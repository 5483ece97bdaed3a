"""Batched execution: clients × restarts as one vectorised optimisation, equal to one by one."""

import json

import pytest
import torch

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks import ATTACKS, Attack, AttackNotApplicable, Budget
from fedleak.core.config import RunnerConfig
from fedleak.data import build_plan, load_dataset
from fedleak.results.store import ResultStore
from fedleak.runners import AttackJob, InlineRunner, batches, execute_batch

from conftest import fedsgd_update, on_test_device, tiny_scenario


def _round(scenario, clients=4, server_round=1):
    updates = [fedsgd_update(scenario, partition_id=p, server_round=server_round)[0] for p in range(clients)]
    return updates, fedsgd_update(scenario)[1]


@pytest.mark.parametrize(("name", "config", "training", "loss_atol"), [
    ("dlg", {"iterations": 8, "restarts": 2}, {"batch_size": 2}, 1e-9),  # soft labels optimised too
    ("idlg", {"iterations": 8}, {"batch_size": 1}, 1e-9),
    # 1 − cos is resolved to ~6e-8 in float32.
    ("inverting", {"iterations": 30, "restarts": 2}, {"algorithm": "fedavg", "local_steps": 2, "batch_size": 1}, 1e-6),
])
def test_a_batch_gives_what_each_attack_gives_alone(name, config, training, loss_atol):
    updates, spec = _round(tiny_scenario(training=training))
    attack = ATTACKS.get(name)(ATTACKS.get(name).Config(**on_test_device(name, **config)))
    model = spec.with_weights(updates[0].global_weights)
    together = attack.run_batch(updates, model, Budget())
    alone = [attack.run(update, model, Budget()) for update in updates]
    restarts = config.get("restarts", 1)
    for batched, single in zip(together, alone):
        assert batched.extras["stacked_problems"] == 4 * restarts and single.extras["stacked_problems"] == restarts
        if name == "inverting":  # fixed Adam steps; L-BFGS stops on convergence, which rounding can shift
            assert batched.extras["iterations"] == single.extras["iterations"]
        assert torch.equal(batched.labels, single.labels)
        # Rounding differs (vmap against plain autograd) and L-BFGS amplifies it along flat valleys
        # (batch 2 with soft labels): the images agree to > 50 dB PSNR, not bit for bit.
        assert float(((batched.images - single.images) ** 2).mean()) < 1e-5
        torch.testing.assert_close(torch.tensor(batched.extras["restart_losses"]),
                                   torch.tensor(single.extras["restart_losses"]), atol=loss_atol, rtol=1e-2)
    assert len({float(r.images.sum()) for r in together}) == 4  # four different clients, four different results


def test_jobs_batch_by_attack_configuration_and_round_up_to_the_limit():
    scenario = tiny_scenario()
    first, spec = _round(scenario, clients=3)
    second, _ = _round(scenario, clients=1, server_round=2)
    idlg, fast = ATTACKS.get("idlg").Config(), ATTACKS.get("idlg").Config(iterations=1)
    jobs = [
        *(AttackJob(u, "idlg", idlg, spec) for u in first),
        *(AttackJob(u, "analytic", ATTACKS.get("analytic").Config(), spec) for u in first),  # never stacked
        AttackJob(first[0], "idlg", fast, spec),
        AttackJob(second[0], "idlg", idlg, spec),
    ]
    sizes = [[(job.attack, job.update.partition_id, job.update.server_round) for job in batch]
             for batch in batches(jobs, max_batch=2)]
    assert sizes == [
        [("idlg", 0, 1), ("idlg", 1, 1)], [("idlg", 2, 1)],
        [("analytic", 0, 1)], [("analytic", 1, 1)], [("analytic", 2, 1)],
        [("idlg", 0, 1)], [("idlg", 0, 2)],
    ]


def _one_step(update, model, budget):
    return ATTACKS.get("idlg")(ATTACKS.get("idlg").Config(**on_test_device("idlg", iterations=1))).run(
        update, model, budget)


@ATTACKS.register("test-picky")
class _Picky(Attack):
    """Batchable, but refuses partition 1: the whole batch fails, each job must get its own outcome."""

    @classmethod
    def batch_key(cls, update):
        return update.server_round

    def run(self, update, model, budget):
        if update.partition_id == 1:
            raise AttackNotApplicable("partition 1")
        return _one_step(update, model, budget)

    def run_batch(self, updates, model, budget):
        return [self.run(update, model, budget) for update in updates]


def test_a_failing_batch_is_rerun_in_parts_so_only_the_bad_job_fails():
    updates, spec = _round(tiny_scenario(), clients=3)
    outcomes = execute_batch([AttackJob(u, "test-picky", _Picky.Config(), spec) for u in updates])
    assert [(o.status, o.error) for o in outcomes] == [("ok", None), ("not applicable", "partition 1"), ("ok", None)]


@ATTACKS.register("test-memory")
class _TwoFit(Attack):
    """A GPU that holds two problems at once; partition 4 does not fit even alone."""

    calls: list[int] = []

    @classmethod
    def batch_key(cls, update):
        return update.server_round

    def run(self, update, model, budget):
        return self.run_batch([update], model, budget)[0]

    def run_batch(self, updates, model, budget):
        self.calls.append(len(updates))
        if len(updates) > 2 or any(u.partition_id == 4 for u in updates):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(details)")
        return [_one_step(update, model, budget) for update in updates]


def test_a_batch_out_of_gpu_memory_is_split_until_it_fits():
    updates, spec = _round(tiny_scenario(partition={"num_clients": 6}), clients=6)
    _TwoFit.calls.clear()
    outcomes = execute_batch([AttackJob(u, "test-memory", _TwoFit.Config(), spec) for u in updates])
    assert [o.error for o in outcomes] == [None] * 4 + ["out of GPU memory: CUDA out of memory. "
                                                        "Tried to allocate 2.00 GiB", None]
    assert _TwoFit.calls == [6, 3, 1, 2, 3, 1, 2, 1, 1]  # 6 → 3 + 3 → (1 + 2) + (1 + (1 + 1))


def _stored_round(tmp_path, runner, attacks):
    scenario = tiny_scenario(attacks=attacks, training={"batch_size": 1})
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    updates, spec = _round(scenario)
    Adversary(scenario, spec, evaluator, store, runner).observe_round(updates, 1)
    return store.query("SELECT partition_id, psnr, extras FROM attack_results ORDER BY partition_id")


def test_the_adversary_submits_a_round_at_once_and_the_runner_batches_it(tmp_path):
    attacks = [{"name": "idlg", **on_test_device("idlg", iterations=30)}]
    batched = _stored_round(tmp_path / "batched", InlineRunner(), attacks)
    alone = _stored_round(tmp_path / "alone", InlineRunner(RunnerConfig(max_batch=1)), attacks)
    assert [json.loads(r["extras"])["stacked_problems"] for r in batched] == [4] * 4
    assert [json.loads(r["extras"])["stacked_problems"] for r in alone] == [1] * 4
    assert all(r["psnr"] > 30 for r in batched + alone)
