"""Every reconstruction kept whole (reconstructions/<name>.safetensors), not only the matched ones."""

import dataclasses

import torch

from fedleak.adversary import Adversary
from fedleak.adversary.ground_truth import PlanTruth
from fedleak.attacks.base import Reconstruction
from fedleak.data import build_plan, load_dataset
from fedleak.results.reconstructions import StoredReconstruction, read_reconstruction, write_reconstruction
from fedleak.results.store import ResultStore
from fedleak.runners import AttackOutcome, InlineRunner

from conftest import fedsgd_update, tiny_scenario


def test_a_reconstruction_round_trips_with_its_labels_and_extras_in_a_private_file(tmp_path):
    images, labels = torch.rand(8, 1, 8, 8), torch.arange(8)
    path = write_reconstruction(tmp_path, "r1-p0-dlg", StoredReconstruction(images, labels, {"loss": 0.25}))
    back = read_reconstruction(tmp_path, path)
    assert torch.equal(back.images, images) and torch.equal(back.labels, labels) and back.extras == {"loss": 0.25}
    assert (tmp_path / path).stat().st_mode & 0o777 == 0o600
    assert read_reconstruction(tmp_path, write_reconstruction(tmp_path, "x", StoredReconstruction(images, None))
                               ).labels is None


class _HeldRunner(InlineRunner):
    """Runs nothing: the test hands the adversary an outcome of its own."""

    def submit(self, jobs, on_done):
        self.jobs = list(jobs)


def _run(tmp_path, save_images=True):
    """One client's update (batch 1), and an attack that returned 3 images for it."""
    scenario = tiny_scenario(attacks=[{"name": "dlg", "iterations": 5}], partition={"num_clients": 2},
                             training={"batch_size": 1}, save_images=save_images)
    store, runner = ResultStore(tmp_path), _HeldRunner()
    store.start_run("run", "tiny", scenario.to_toml())
    splits = load_dataset(scenario.dataset)
    evaluator = PlanTruth(splits.train, build_plan(0, scenario.dataset, scenario.partition), scenario.training)
    adversary = Adversary(scenario, scenario.model_spec(splits), evaluator, store, runner)
    adversary.observe_round([dataclasses.replace(fedsgd_update(scenario)[0], run_id="run")], 1)
    (job,) = runner.jobs
    returned = Reconstruction(torch.rand(3, 1, 8, 8), torch.tensor([1, 2, 3]), 0.1, {"loss": 0.5})
    adversary.record_outcome(AttackOutcome(job, returned, None, 0.1))
    (row,) = store.query("SELECT status, num_reconstructed, num_ground_truth, reconstruction FROM attack_results")
    store.close()
    return row, returned


def test_every_image_the_attack_returned_is_kept_though_only_one_is_matched_and_scored(tmp_path):
    row, returned = _run(tmp_path)
    assert row["status"] == "ok" and (row["num_reconstructed"], row["num_ground_truth"]) == (3, 1)
    assert row["reconstruction"] == "reconstructions/r1-p0-dlg.safetensors"
    kept = read_reconstruction(tmp_path, row["reconstruction"])
    assert torch.equal(kept.images, returned.images) and torch.equal(kept.labels, returned.labels)
    assert kept.extras == {"loss": 0.5}


def test_save_images_false_keeps_no_pictures_of_the_clients_data(tmp_path):
    row, _ = _run(tmp_path, save_images=False)
    assert row["reconstruction"] is None and not (tmp_path / "reconstructions").exists()
