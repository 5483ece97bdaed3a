"""The deployment topology end to end, as processes on 127.0.0.1 (fedleak.deploy.local): a TLS
SuperLink with SuperNode authentication, SuperNodes and SuperExecs, a Ray head for the attacks;
`flwr run` stores every round and attack as the simulation does with the same seed; an
unregistered SuperNode is refused; a bad scenario is one line and a failed run, nothing lost."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from fedleak.deploy.local import HOST, LocalDeployment
from fedleak.federation import simulate
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.scenario import load_scenario

pytestmark = pytest.mark.xdist_group("test_deployment")  # its module fixture runs once, on one worker

REPO = Path(__file__).resolve().parents[1]
SCORES = ("round", "partition_id", "attack", "status", "mse", "psnr", "ssim", "label_accuracy")


def _overrides(ray_address: str | None) -> list[str]:
    runner = ["runner.name=ray", f"runner.address={ray_address}"] if ray_address else ["runner.name=ray"]
    return ["federation.rounds=2", "federation.test_samples=50", "partition.num_clients=2", "capture.rounds=[1]",
            "attacks.0.iterations=20", "attacks.1.iterations=5", *runner]


def _scores(run_dir: Path) -> list[dict]:
    store = ResultStore.open_existing(run_dir)
    try:
        return store.query(f"SELECT {', '.join(SCORES)} FROM attack_results ORDER BY round, partition_id, attack")
    finally:
        store.close()


def _only_run(out_dir: Path, prefix: str = "") -> Path:
    runs = [d for d in out_dir.iterdir() if d.name.startswith(prefix)]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Three SuperNodes of which two are registered; the run and the rejected scenario inside it."""
    root = tmp_path_factory.mktemp("deployment")
    out_dir = root / "runs"
    with LocalDeployment(root / "deployment", supernodes=3, registered=2) as deployed:
        sets = "; ".join(_overrides(deployed.ray_address))
        run = deployed.flwr(["run", ".", "fedleak-local", "--stream", "--run-config",
                             f"set='{sets}' out-dir='{out_dir}'"], timeout=500, check=False, cwd=REPO)
        bad = deployed.flwr(["run", ".", "fedleak-local", "--stream", "--run-config",
                             f"set='training.lrr=1' out-dir='{out_dir}'"], timeout=200, check=False, cwd=REPO)
        refused = deployed.processes["supernode-2"].wait(60)
        workers_ran = [path.read_text(errors="replace") for path in deployed.ray_worker_logs()]
        listening = deployed.listening()
        logs = {name: deployed.log(name) for name in deployed.processes}
        ports = [deployed.superlink_port, deployed.ray_port]
        processes = list(deployed.processes.values())
    return {"run": run, "bad": bad, "out_dir": out_dir, "refused": refused, "logs": logs, "ports": ports,
            "processes": processes, "workers_ran": workers_ran, "listening": listening}


def test_a_deployed_run_stores_what_the_simulation_stores_with_the_same_seed(deployment, tmp_path):
    assert deployment["run"].returncode == 0, deployment["run"].stdout[-3000:] + deployment["run"].stderr[-2000:]
    deployed = _only_run(deployment["out_dir"], "quickstart-")
    store = ResultStore.open_existing(deployed)
    assert store.query("SELECT status FROM runs")[0]["status"] == "finished"
    assert [r["round"] for r in store.query("SELECT round FROM rounds ORDER BY round")] == [0, 1, 2]
    store.close()
    scenario = load_scenario(REPO / "scenarios" / "quickstart.toml", _overrides(None))
    simulated = simulate(scenario, new_run_dir(tmp_path, scenario.name))
    assert _scores(deployed) == _scores(simulated)
    assert len(_scores(deployed)) == 4 and all(r["status"] == "ok" for r in _scores(deployed))
    # the attacks ran on the deployment's Ray cluster, not a Ray of the ServerApp's own
    assert any("AttackWorker" in log for log in deployment["workers_ran"])


def test_an_unregistered_supernode_is_refused_in_one_line(deployment):
    assert deployment["refused"] != 0
    assert "Failed to activate SuperNode" in deployment["logs"]["supernode-2"]


def test_a_bad_scenario_key_is_one_line_in_the_log_and_a_failed_run_losing_nothing(deployment):
    line = "training.lrr: Extra inputs are not permitted"
    assert line in deployment["bad"].stdout + deployment["bad"].stderr
    rejected = _only_run(deployment["out_dir"], "rejected-")
    store = ResultStore.open_existing(rejected)
    assert store.query("SELECT status, error FROM runs")[0]["status"] == "failed"
    assert line in store.query("SELECT error FROM runs")[0]["error"]
    store.close()
    assert _only_run(deployment["out_dir"], "quickstart-")  # the earlier run is still there


def test_every_server_of_the_deployment_listens_on_loopback_only(deployment):
    assert len(deployment["listening"]) >= 4, deployment["listening"]  # the SuperLink, SuperNodes, Ray
    assert all(address.startswith("127.") for address in deployment["listening"]), deployment["listening"]


def test_every_process_started_is_stopped_and_its_ports_closed(deployment):
    assert all(process.poll() is not None for process in deployment["processes"])
    for port in deployment["ports"]:
        with socket.socket() as probe:
            assert probe.connect_ex((HOST, port)) != 0


def test_a_missing_certificate_is_one_line(tmp_path):
    done = subprocess.run(["flower-superlink", "--host", HOST, "--port", "1", "--ssl-ca-certfile",
                           str(tmp_path / "ca.crt"), "--ssl-certfile", str(tmp_path / "superlink.crt"),
                           "--ssl-keyfile", str(tmp_path / "superlink.key")], capture_output=True, text=True,
                          timeout=60)
    assert "Path argument `--ssl-ca-certfile` does not point to a file." in done.stdout + done.stderr
