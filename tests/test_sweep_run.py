"""A sweep end to end: killed, resumed, paired, compared and reported (real Flower simulations).

One module fixture runs a two-arm sweep, SIGKILLs it while the second arm runs, and runs
the same command again; every test reads what that left behind.
"""

import base64
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fedleak.adversary.metrics import prior_reference
from fedleak.data import build_plan, load_dataset
from fedleak.sweep import load_sweep

pytestmark = pytest.mark.xdist_group("test_sweep_run")  # its module fixture runs once, on one worker

SWEEP = """
name = "tiny-sweep"
[base]
name = "tiny"
partition = { num_clients = 2 }
training = { algorithm = "fedsgd", lr = 0.1, batch_size = 2 }
federation = { rounds = 2, test_samples = 50 }
capture = { rounds = [1] }
attacks = [{ name = "idlg", iterations = 5 }]
[[arms]]
name = "none"
[[arms]]
name = "int8"
defenses = [{ name = "int8" }]
"""
ARMS = ("none", "int8")


def _rows(run_dir, sql):
    with sqlite3.connect(f"file:{run_dir / 'results.sqlite'}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def _wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "sweep.toml").write_text(SWEEP)
    command = [sys.executable, "-m", "fedleak.cli", "sweep", str(root / "sweep.toml"), "--out", str(root / "runs")]
    sweep_dir = root / "runs" / "tiny-sweep"
    killed = subprocess.Popen(command, cwd=root, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _wait_for(sweep_dir / "int8" / "progress.json", killed)  # the first arm finished, the second runs
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    first = _rows(sweep_dir / "none", "SELECT run_id, started, status FROM runs")
    resumed = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    return {"root": root, "dir": sweep_dir, "first": first, "resumed": resumed}


def test_a_killed_sweep_resumes_without_rerunning_finished_arms(sweep):
    resumed, sweep_dir = sweep["resumed"], sweep["dir"]
    assert resumed.returncode == 0, resumed.stderr
    assert "none: skipped" in resumed.stderr and "finished before" in resumed.stderr
    assert "int8: running" in resumed.stderr and "interrupted before: running again" in resumed.stderr
    assert sweep["first"][0][2] == "finished"
    assert _rows(sweep_dir / "none", "SELECT run_id, started, status FROM runs") == sweep["first"]  # not re-run
    attempt = sweep_dir / ".attempts" / "int8-1"
    assert attempt.is_dir(), "the interrupted attempt is kept, not deleted"


def test_no_row_is_duplicated(sweep):
    for arm in ARMS:
        run_dir = sweep["dir"] / arm
        assert _rows(run_dir, "SELECT status FROM runs") == [("finished",)]
        updates = _rows(run_dir, "SELECT round, partition_id FROM updates")
        assert len(updates) == len(set(updates)) == 4  # 2 clients × 2 rounds
        attacks = _rows(run_dir, "SELECT round, partition_id, attack FROM attack_results")
        assert len(attacks) == len(set(attacks)) == 2  # idlg on both round-1 updates


def test_arms_see_bit_identical_client_batches(sweep):
    scenario = load_sweep(sweep["root"] / "sweep.toml").arms["none"]
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    digests = {arm: dict(((r, p), d) for r, p, d in _rows(sweep["dir"] / arm, "SELECT round, partition_id, batch_digest "
                                                                           "FROM updates")) for arm in ARMS}
    assert digests["none"] == digests["int8"]
    for (server_round, partition), digest in digests["none"].items():
        assert digest == plan.batch_digest((partition,), server_round, scenario.training)
    plans = {arm: _rows(sweep["dir"] / arm, "SELECT plan_digest, data_plan FROM runs")[0] for arm in ARMS}
    assert plans["none"] == plans["int8"]
    assert set(json.loads(plans["none"][1])) == {"seed", "shards", "schedule", "pool", "initial_model"}


def test_results_store_the_mean_image_reference(sweep):
    scenario = load_sweep(sweep["root"] / "sweep.toml").arms["none"]
    pool = load_dataset(scenario.dataset).train
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    rows = _rows(sweep["dir"] / "none", "SELECT round, partition_id, prior_psnr, prior_ssim, leakage, recovered_rate "
                                        "FROM attack_results")
    assert rows
    for server_round, partition, prior_psnr, prior_ssim, leakage, recovered in rows:
        truth = pool.images[plan.samples(partition, server_round, scenario.training)]
        reference = prior_reference(truth, truth, pool.images.mean(dim=0))
        assert prior_psnr == pytest.approx(float(reference.psnr.mean()), rel=1e-5)
        assert prior_ssim == pytest.approx(float(reference.ssim.mean()), rel=1e-5)
        assert leakage is not None and 0 <= recovered <= 1


def _cli(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "fedleak.cli", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_compare_tables_json_and_csv(sweep):
    table = _cli("compare", sweep["dir"], cwd=sweep["root"])
    assert table.returncode == 0 and "per round" in table.stdout and "per arm" in table.stdout
    assert "unpaired" not in table.stdout
    data = json.loads(_cli("compare", sweep["dir"], "--json", cwd=sweep["root"]).stdout)
    assert data["paired"] and [s["arm"] for s in data["summary"]] == list(ARMS)
    assert {row["attack"] for row in data["rounds"] if row["round"] == 1} == {"idlg"}
    csv = _cli("compare", sweep["dir"] / "none", sweep["dir"] / "int8", "--csv", cwd=sweep["root"]).stdout
    header, *lines = csv.splitlines()
    assert header.startswith("round,arm,test_accuracy") and len(lines) == 4 and lines[0].endswith("True")


def test_the_report_is_self_contained(sweep):
    out = sweep["root"] / "report.html"
    done = _cli("report", sweep["dir"], "-o", out, cwd=sweep["root"])
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    sources = re.findall(r"""(?:src|href)=['"]([^'"]*)['"]""", html)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    images = [Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) for source in sources]
    assert all(image.size[0] > 10 and image.size[1] > 10 for image in images)
    assert len(images) >= 3 + 2  # three plots and each arm's grid


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("FEDLEAK_REQUIRE_CHROMIUM"),
                    reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_report_renders_in_headless_chromium(sweep, tmp_path):
    assert CHROMIUM, "FEDLEAK_REQUIRE_CHROMIUM is set but chromium is not installed"
    report = sweep["root"] / "chromium.html"
    _cli("report", sweep["dir"], "-o", report, cwd=sweep["root"])
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", "--enable-logging=stderr", "--v=0",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
                           f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 200).mean() > 0.01, "almost nothing was drawn"
