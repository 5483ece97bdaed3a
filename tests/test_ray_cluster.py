"""Past one machine's Ray: `fedleak run --ray-address` runs a simulation's clients on a running Ray cluster.

The cluster is a Ray head started on its own (`ray start --head`, 127.0.0.1 only:
fedleak.deploy.local with ``flower=False``), as a cluster's head would be. The run joins it
rather than starting a Ray of its own, its client actors run on the cluster's workers, and its
scores equal a local simulation's with the same seed. (More nodes join a cluster only when its
servers listen on every interface, which tests here must not do.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_deployment import _only_run, _scores

from fedleak.deploy.local import LocalDeployment

pytestmark = pytest.mark.xdist_group("test_ray_cluster")  # its module fixture runs once, on one worker

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "scenarios" / "quickstart.toml")
SETS = ["--set", "federation.rounds=2", "--set", "federation.test_samples=50", "--set", "partition.num_clients=2",
        "--set", "attacks.0.iterations=10", "--set", "attacks.1.iterations=5"]


def _fedleak(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedleak", "run", QUICKSTART, *SETS, *argv], capture_output=True,
                          text=True, timeout=400, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    with LocalDeployment(root / "cluster", flower=False, ray_cpus=2) as cluster:
        done = _fedleak("--out", str(root / "cluster-runs"), "--ray-address", cluster.ray_address, env=cluster.env())
        workers_ran = [log.read_text(errors="replace") for log in cluster.ray_worker_logs()]
    local = _fedleak("--out", str(root / "local-runs"), "--verbose")
    return {"done": done, "workers_ran": workers_ran, "root": root, "local": local}


def test_a_simulation_on_a_running_ray_cluster_stores_what_a_local_one_does(cluster_run):
    done, local = cluster_run["done"], cluster_run["local"]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert local.returncode == 0, local.stderr[-2000:]
    assert "status: finished" in done.stdout
    on_cluster = _scores(_only_run(cluster_run["root"] / "cluster-runs"))
    assert [row["status"] for row in on_cluster] == ["ok"] * 4
    assert on_cluster == _scores(_only_run(cluster_run["root"] / "local-runs"))


def test_verbose_says_where_the_time_went_phase_by_phase(cluster_run):
    table = cluster_run["local"].stdout.split("where the time went")[1]
    for phase in ("validation", "imports", "Ray start", "server start", "attacks", "scoring and storing", "rounds",
                  "server end", "shutdown", "since fedleak's CLI was loaded"):
        assert phase in table, phase
    rounds = next(line for line in table.splitlines() if "rounds (training" in line)
    assert [cell.strip() for cell in rounds.split("│")][-2] == "2"  # spans: the scenario's 2 rounds


def test_the_client_actors_ran_on_the_clusters_workers(cluster_run):
    assert any("ClientAppActor" in log for log in cluster_run["workers_ran"])


def test_a_cluster_address_with_nothing_listening_is_one_line_and_no_run(tmp_path):
    done = _fedleak("--out", str(tmp_path), "--ray-address", "127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: no Ray cluster at 127.0.0.1:9: Connection refused"]
    assert list(tmp_path.iterdir()) == []
