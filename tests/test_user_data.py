"""End to end: your own 128 colour images, as a folder of PNGs and as an .npz, through ``fedleak run``.

Two clients, one FedSGD round of batch 1 on DLG's LeNet; the server runs iDLG, DLG and
Inverting Gradients on both updates and scores them against the clients' real images.
"""

import sys

import numpy as np
import pytest
from user_images import photo_crops, write_image_folder

from fedleak import cli
from fedleak.results.store import ResultStore

SCENARIO = """\
name = "{name}"
seed = 0

[dataset]
{dataset}
resize = 16

[partition]
num_clients = 2

[model]
name = "lenet"

[training]
algorithm = "fedsgd"
batch_size = 1

[federation]
rounds = 1

[[attacks]]
name = "idlg"
iterations = {iterations}

[[attacks]]
name = "dlg"
iterations = {iterations}

[[attacks]]
name = "inverting"
iterations = {iterations}
"""


def write_scenario(folder, source: str, iterations: int = 5):
    """128 32×32 photo crops in 4 classes, as ``image-folder`` PNGs or an ``npz`` file, and a scenario reading them."""
    images, labels = photo_crops(128, size=32)
    if source == "image-folder":
        dataset = f'name = "image-folder"\nroot = "{write_image_folder(folder / "images", images, labels)}"'
    else:
        np.savez(folder / "images.npz", x=images, y=labels)
        dataset = f'name = "npz"\npath = "{folder / "images.npz"}"'
    path = folder / f"{source}.toml"
    path.write_text(SCENARIO.format(name=source, dataset=dataset, iterations=iterations))
    return path


@pytest.mark.parametrize("source", ["image-folder", "npz"])
def test_your_own_images_run_through_the_cli_and_every_attack_is_scored(tmp_path, monkeypatch, capsys, source):
    scenario = write_scenario(tmp_path, source)
    monkeypatch.setattr(sys, "argv", ["fedleak", "run", str(scenario), "--out", str(tmp_path / "runs")])
    cli.main()
    assert "status: finished" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    store = ResultStore.open_existing(run_dir)
    try:
        results = store.query("SELECT attack, partition_id, status, psnr, ssim, num_reconstructed FROM attack_results")
    finally:
        store.close()
    assert sorted((r["attack"], r["partition_id"]) for r in results) == [
        (attack, client) for attack in ("dlg", "idlg", "inverting") for client in (0, 1)]
    assert all(r["status"] == "ok" and r["num_reconstructed"] == 1 for r in results), results
    assert all(np.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in results), results
