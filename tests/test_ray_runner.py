"""The Ray worker pool (on CPU): same results as inline, failures isolated, queue and drain policies."""

import json
import os
import sys
import threading
import time

import pytest
import ray
import torch
from ray import cloudpickle

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks import ATTACKS, Attack, Reconstruction
from fedleak.data import build_plan, load_dataset
from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.runners import InlineRunner
from fedleak.runners._ray_pool import RayPool
from fedleak.runners.ray_config import RayRunnerConfig

from conftest import fedsgd_update, tiny_scenario

pytestmark = pytest.mark.xdist_group("test_ray_runner")  # its module fixture runs once, on one worker

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


@ATTACKS.register("test-sleep")
class _Sleep(Attack):
    """Ignores its time budget: sleeps ``seed`` seconds (the only numeric key every attack has)."""

    def run(self, update, model, budget):
        time.sleep(self.config.seed)
        raise RuntimeError("woke up")


@ATTACKS.register("test-exit")
class _Exit(Attack):
    """Kills its own worker process, as a segfault or the OOM killer would."""

    def run(self, update, model, budget):
        os._exit(1)


def test_a_simulation_dispatches_to_the_pool_on_flowers_ray(tmp_path):
    assert not ray.is_initialized()  # first in this file: the pool must join the Ray that Flower starts
    scenario = tiny_scenario(partition={"num_clients": 2}, federation={"rounds": 1, "test_samples": 50},
                             runner={"name": "ray"}, attacks=[{"name": "idlg", "iterations": 30}])
    run_dir = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    store = ResultStore.open_existing(run_dir)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"
    rows = store.query("SELECT status, psnr FROM attack_results")
    assert len(rows) == 2 and all(r["status"] == "ok" and r["psnr"] > 30 for r in rows)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _adversary(tmp_path, runner, attacks):
    scenario = tiny_scenario(attacks=attacks, capture={"clients": [0, 1]})
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    store = ResultStore(tmp_path)
    return Adversary(scenario, fedsgd_update(scenario)[1], evaluator, store, runner), scenario, store


def _attack_all(tmp_path, runner, attacks, wait=True):
    adversary, scenario, store = _adversary(tmp_path, runner, attacks)
    adversary.observe_round([fedsgd_update(scenario, partition_id=partition)[0] for partition in (0, 1)], 1)
    runner.close(wait=wait)
    return {(r["partition_id"], r["attack"]): r for r in store.query("SELECT * FROM attack_results")}


def test_the_pool_gives_the_inline_scores_and_isolates_crashes_timeouts_and_dead_workers(tmp_path, local_ray):
    scored = [{"name": "idlg", "iterations": 30}, {"name": "analytic"}]
    inline = _attack_all(tmp_path / "inline", InlineRunner(), scored)
    config = RayRunnerConfig(workers=2, grace_s=0.5)
    failing = [{"name": "test-exit"}, {"name": "test-sleep", "seed": 60, "time_budget_s": 0.1}]
    pooled = _attack_all(tmp_path / "ray", RayPool(config), [*failing, *scored])

    for key, row in inline.items():
        assert pooled[key]["status"] == row["status"]
        for metric in ("psnr", "ssim", "label_accuracy"):
            assert pooled[key][metric] == pytest.approx(row[metric], rel=1e-4, abs=1e-6)
    assert inline[(0, "idlg")]["psnr"] > 30
    assert json.loads(pooled[(0, "idlg")]["extras"])["stacked_problems"] == 2  # the round's two clients, batched
    for partition in (0, 1):
        assert pooled[(partition, "test-exit")]["error"].startswith("worker died")
        assert pooled[(partition, "test-sleep")]["error"].startswith("timed out")
        assert pooled[(partition, "test-sleep")]["seconds"] < 10  # killed, not slept through
    assert len(pooled) == 8


@ATTACKS.register("test-visible-gpus")
class _VisibleGpus(Attack):
    """Reconstructs noise; its extras say how many GPUs its process sees."""

    def run(self, update, model, budget):
        return Reconstruction(torch.rand(1, *model.image_shape), None, 0.0, {"gpus": torch.cuda.device_count()})


def test_each_worker_sees_the_gpu_share_it_reserved_and_none_without_one(tmp_path, local_ray):
    gpus = ray.cluster_resources().get("GPU", 0.0)  # on a GPU machine (benchmarks/gpu_check.sh): split over 2
    rows = _attack_all(tmp_path, RayPool(RayRunnerConfig(workers=2)), [{"name": "test-visible-gpus"}])
    assert {json.loads(row["extras"])["gpus"] for row in rows.values()} == ({1} if gpus else {0})


def test_submit_returns_at_once_and_a_full_queue_applies_its_policy(tmp_path, local_ray):
    runner = RayPool(RayRunnerConfig(workers=1, max_pending=1, backpressure="reject"))
    adversary, scenario, store = _adversary(tmp_path, runner, [{"name": "test-sleep", "seed": 1}])
    update = fedsgd_update(scenario)[0]
    started = time.perf_counter()
    for _ in range(4):
        adversary.observe(update)
    assert time.perf_counter() - started < 1.0  # no submission waited for a 1 s attack
    runner.close(wait=True)
    errors = [r["error"] for r in store.query("SELECT error FROM attack_results")]
    assert len(errors) == 4 and sum(e.startswith("rejected") for e in errors) >= 2
    assert all(e.startswith("RuntimeError: woke up") for e in errors if not e.startswith("rejected"))


def test_blocking_backpressure_waits_and_no_wait_cancels_what_is_left(tmp_path, local_ray):
    runner = RayPool(RayRunnerConfig(workers=1, max_pending=1, backpressure="block"))
    adversary, scenario, store = _adversary(tmp_path, runner, [{"name": "test-sleep", "seed": 30}])
    update = fedsgd_update(scenario)[0]
    adversary.observe(update)  # runs
    adversary.observe(update)  # queued
    third = threading.Thread(target=adversary.observe, args=(update,))
    third.start()
    time.sleep(0.5)
    assert third.is_alive()  # blocked: the queue is full
    runner.close(wait=False)
    third.join(timeout=10)
    errors = [r["error"] for r in store.query("SELECT error FROM attack_results")]
    assert len(errors) >= 2 and all(e.startswith("cancelled") for e in errors)


def test_a_dispatcher_that_fails_reports_its_jobs_instead_of_hanging(tmp_path, local_ray, monkeypatch):
    def lost(*args, **kwargs):
        raise ConnectionError("lost the Ray cluster")

    runner = RayPool(RayRunnerConfig(workers=1))
    adversary, scenario, store = _adversary(tmp_path, runner, [{"name": "test-sleep", "seed": 30}])
    update = fedsgd_update(scenario)[0]
    monkeypatch.setattr(ray, "wait", lost)
    adversary.observe(update)
    adversary.observe(update)
    runner.close(wait=True)  # returns: the dispatcher reports what it could not finish
    adversary.observe(update)  # and what comes later is refused with the same reason
    errors = [r["error"] for r in store.query("SELECT error FROM attack_results")]
    assert errors == ["runner failed: ConnectionError: lost the Ray cluster"] * 3


def test_a_cluster_that_cannot_be_joined_fails_the_attacks_not_the_run(tmp_path, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("no GCS at 127.0.0.1:1")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", unreachable)
    runner = RayPool(RayRunnerConfig(address="127.0.0.1:1"))
    adversary, scenario, store = _adversary(tmp_path, runner, [{"name": "idlg"}])
    adversary.observe(fedsgd_update(scenario)[0])  # returns: nothing raised into the round
    runner.close(wait=True)
    errors = [r["error"] for r in store.query("SELECT error FROM attack_results")]
    assert errors == ["runner failed: could not start the Ray pool at 127.0.0.1:1: no GCS at 127.0.0.1:1"]


def test_workers_running_other_fedleak_code_than_the_server_refuse_every_attack(tmp_path, local_ray, monkeypatch):
    from fedleak.runners import _ray_pool

    monkeypatch.setattr(_ray_pool, "code_fingerprint", lambda: "0.1.0+000000000000")  # the server's copy differs
    rows = _attack_all(tmp_path, RayPool(RayRunnerConfig(name="ray", workers=1)), [{"name": "analytic"}])
    assert len(rows) == 2 and all(r["status"] == "failed" for r in rows.values())
    assert all(r["error"].startswith("fedleak code differs: the server runs 0.1.0+000000000000, this attack worker "
                                     "0.1.0+") for r in rows.values())
