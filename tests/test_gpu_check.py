"""benchmarks/gpu_check.sh end to end on the CPU at toy sizes, so that the GPU check cannot rot
before a device is lent; and the preparation of what the GPU machine lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import MNIST_DIR

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_prepare  # noqa: E402 - a benchmark module, found through the path above

STAGES = ["env", "a", "b", "c", "d-inverting", "d-kkt", "d-grnn"]
OUT_FILES = {"stages.jsonl", "a.xml", "b.jsonl", "c.jsonl", "d.jsonl", "log.txt", "gpu_check.json", "gpu_check.md"}
"""At most 8 files under $OUT come back from the device: these."""

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="the MNIST t10k files are not in ../shared/data/mnist")


def _check(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny", *args],
                          env={**os.environ, "OUT": str(out)}, capture_output=True, text=True, timeout=600)


@needs_mnist
def test_every_stage_runs_and_the_report_puts_each_figure_beside_its_target(tmp_path):
    done = _check(tmp_path)
    log = (tmp_path / "log.txt").read_text()
    assert done.returncode == 0, done.stderr + log[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == OUT_FILES
    stages = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in stages] == STAGES
    assert [s["status"] for s in stages] == ["ok"] * len(STAGES), log[-3000:]
    assert stages[0]["device"] == "cpu" and stages[0]["versions"]["flwr"] == "1.41.0"

    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["tests"]["passed"] >= 2 and summary["tests"]["failures"] == summary["tests"]["errors"] == 0
    assert sorted((r["attack"], r["concurrent"]) for r in summary["throughput"]) == [
        ("dlg", 1), ("dlg", 2), ("inverting", 1), ("inverting", 2)]
    assert set(summary["round"][0]["ratios"]) == {"fedavg", "dispatch"}
    assert sorted(r.get("part") or r["attack"] for r in summary["paper_sizes"]) == ["grnn", "kkt", "resnet_inverting",
                                                                                   "resnet_inverting"]
    inverting = [r for r in summary["paper_sizes"] if r.get("part") == "resnet_inverting"]
    assert all(r["stacked"] == 2 and r["iterations"] == 2 and r["mean_image_psnr"] > 0 for r in inverting)
    # On the CPU there is no GPU utilisation to judge, and nothing is made up for it.
    assert summary["targets"]["GPU utilisation at 256 ≥ 50 % (lowest attack's mean)"] == "not measured"
    assert summary["targets"]["dlg batched/one-by-one at 256 ≥ 30×"] == "not measured"
    report = (tmp_path / "gpu_check.md").read_text()
    assert "## d. Paper sizes" in report and "KKT, n 4" in report and "GRNN, LeNet/MNIST, batch 2" in report


@needs_mnist
def test_a_budget_spent_skips_the_stages_and_still_reports(tmp_path):
    done = _check(tmp_path, "--budget", "16")  # 15 s are kept for the report: nothing is left for a stage
    assert done.returncode == 0, done.stderr
    stages = [json.loads(line) for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert [(s["stage"], s["status"]) for s in stages] == [("env", "ok")] + [(s, "skipped") for s in STAGES[1:]]
    assert set(json.loads((tmp_path / "gpu_check.json").read_text())["targets"].values()) == {"not measured"}


@pytest.mark.parametrize(("args", "message"), [
    (["--budget", "soon"], "--budget must be whole seconds, got 'soon'"),
    (["--fast"], "unknown argument '--fast'"),
    (["--data-root", "/nonexistent"], "no MNIST t10k files"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, args, message):
    done = _check(tmp_path, *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_wheels_carried_are_what_fedleak_needs_and_the_image_lacks():
    needed = gpu_prepare.requirement_closure("fedleak", "3.12")
    assert {"flwr", "ray", "pydantic", "opacus", "torch", "numpy"} <= set(needed)
    carried = gpu_prepare.missing_on_image(needed)
    assert {"flwr", "ray", "pydantic", "pydantic-core", "opacus", "protobuf"} <= set(carried)
    assert not {"torch", "torchvision", "numpy", "uv", "fedleak"} & set(carried)
    assert not [name for name in carried if name.startswith("nvidia-")]


def test_rays_wheel_is_repacked_without_what_nothing_imports(tmp_path):
    wheel = tmp_path / "ray-0-cp312-cp312-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("ray/__init__.py", "")
        archive.writestr("ray/jars/ray_dist.jar", b"\0" * 1000)
        archive.writestr("ray/rllib/__init__.py", "")
        archive.writestr("ray-0.dist-info/RECORD", "ray/__init__.py,,\nray/jars/ray_dist.jar,sha256=x,1000\n"
                                                   "ray/rllib/__init__.py,,\n")
    gpu_prepare.slimmed_ray(wheel)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.namelist() == ["ray/__init__.py", "ray-0.dist-info/RECORD"]
        assert archive.read("ray-0.dist-info/RECORD") == b"ray/__init__.py,,\n"
