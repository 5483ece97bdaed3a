"""Faults on a real ``fedleak run`` process: Ctrl-C, SIGTERM and kill -9, then ``fedleak resume``.

Each run is its own process group (as a terminal's job is), on a scenario whose round-2
attacks go to a Ray worker, so they are still queued or running when the signal comes.
Resuming after Ctrl-C differs from resuming after a kill only in the cancelled rows it
deletes first (``tests/test_store.py``), so only the kill is resumed here: each run is a
process that starts Flower and Ray (~30 s on two cores).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedleak.results.checkpoint import checkpoint_round

pytestmark = pytest.mark.xdist_group("test_faults")  # its module fixture runs once, on one worker

ROUNDS = 5
SCENARIO = f"""
name = "faults"
[partition]
num_clients = 2
[federation]
rounds = {ROUNDS}
test_samples = 100
[capture]
rounds = [2]
[[attacks]]
name = "dlg"
iterations = 60
[runner]
name = "ray"
workers = 1
"""
FEDLEAK = [sys.executable, "-m", "fedleak"]
EXIT_SECONDS = 10.0
"""Signal to exit: the bound the issue sets for Ctrl-C (the process exits 130 well within it)."""
VOLATILE = {"run_id", "id", "name", "started", "finished", "seconds", "batch_seconds", "image", "node_id", "extras"}
"""Columns that differ between two runs of one scenario: names, clocks, Flower's random node ids."""


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "faults.toml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture(scope="module")
def uninterrupted(scenario_file, tmp_path_factory) -> dict[str, list[dict]]:
    """What the scenario stores when nothing stops it."""
    out = tmp_path_factory.mktemp("uninterrupted")
    done = subprocess.run([*FEDLEAK, "run", str(scenario_file), "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return _stored(_run_dir(out))


def _start(scenario_file: Path, out: Path, umask: int = 0o022) -> subprocess.Popen:
    return subprocess.Popen([*FEDLEAK, "run", str(scenario_file), "--out", str(out)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, umask=umask)


def _run_dir(out: Path) -> Path:
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


def _wait_for_round(process: subprocess.Popen, out: Path, server_round: int, timeout_s: float = 300) -> Path:
    """The run directory, once the run has completed (checkpointed) ``server_round``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended early:\n{process.stdout.read()[-2000:]}"
        dirs = [path for path in out.iterdir() if path.is_dir()] if out.exists() else []
        if dirs and (checkpoint_round(dirs[0]) or 0) >= server_round:
            return dirs[0]
        time.sleep(0.05)
    raise AssertionError(f"round {server_round} was not completed within {timeout_s} s")


def _signal_and_time(process: subprocess.Popen, signum: int, group: bool) -> float:
    """Send ``signum`` (to the whole group, as a terminal's Ctrl-C does, or the driver alone);
    seconds until the process exited (killing the group if it did not in time)."""
    start = time.monotonic()
    (os.killpg if group else os.kill)(process.pid, signum)
    try:
        process.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"still running {EXIT_SECONDS} s after {signal.Signals(signum).name}") from None
    finally:
        process.stdout.close()
    return time.monotonic() - start


def _kill_group_leftovers(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stored(run_dir: Path) -> dict[str, list[dict]]:
    """Every stored figure, without the columns two runs of one scenario differ in, in a fixed order."""
    db = sqlite3.connect(f"{(run_dir / 'results.sqlite').as_uri()}?mode=ro", uri=True)
    stored = {}
    for table in ("runs", "rounds", "updates", "attack_results"):
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})") if row[1] not in VOLATILE]
        rows = [dict(zip(columns, row)) for row in db.execute(f"SELECT {', '.join(columns)} FROM {table}")]
        stored[table] = sorted(rows, key=lambda row: json.dumps(row, sort_keys=True))
    db.close()
    return stored


def _results(run_dir: Path) -> str:
    done = subprocess.run([*FEDLEAK, "results", str(run_dir)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _resume(run_dir: Path) -> None:
    done = subprocess.run([*FEDLEAK, "resume", str(run_dir)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming faults after round 2 of 5" in done.stdout


def _session_pids(session: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session:
                pids.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            pass
    return pids


def _listening_addresses(pids: list[int]) -> set[str]:
    """The addresses the processes ``pids`` accept TCP connections on (from /proc/net/tcp{,6})."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except (FileNotFoundError, PermissionError):
            continue
        except OSError:  # a descriptor closed while listing
            continue
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(_address(fields[1].split(":")[0]))
    return addresses


def _address(hexed: str) -> str:
    """/proc/net/tcp's address: 32-bit words in the host's (little-endian) byte order."""
    raw = b"".join(bytes.fromhex(hexed[i:i + 8])[::-1] for i in range(0, len(hexed), 8))
    return str(ipaddress.ip_address(raw))


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _assert_private(run_dir: Path) -> None:
    modes = {str(path.relative_to(run_dir)): path.stat().st_mode & 0o777 for path in run_dir.rglob("*")}
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert {name: mode for name, mode in modes.items()
            if mode != (0o700 if (run_dir / name).is_dir() else 0o600)} == {}
    assert {"results.sqlite", "scenario.toml", "checkpoint.safetensors", "captures/round-2.safetensors"} <= set(modes)


def test_ctrl_c_ends_the_run_interrupted_with_130_its_files_private_and_its_servers_on_loopback(
        scenario_file, tmp_path):
    process = _start(scenario_file, tmp_path, umask=0)  # files private whatever the umask
    try:
        run_dir = _wait_for_round(process, tmp_path, 2)
        listening = _listening_addresses(_session_pids(process.pid))
        ray_folder = Path(tempfile.gettempdir(), f"fedleak-ray-{os.getuid()}")
        ray_folder_mode = ray_folder.stat().st_mode & 0o777  # Ray makes its own folder 0777: this one holds it
        ray_session = (ray_folder / "r" / "session_latest").resolve()
        seconds = _signal_and_time(process, signal.SIGINT, group=True)
    finally:
        _kill_group_leftovers(process)
    assert listening and all(_is_loopback(address) for address in listening), listening  # driver, GCS, raylet
    assert ray_folder_mode == 0o700 and ray_session.is_relative_to(ray_folder)
    assert process.returncode == 130 and seconds < EXIT_SECONDS
    shown = _results(run_dir)
    assert "status: interrupted (interrupted by SIGINT after round 2 of 5" in shown and "fedleak resume" in shown
    assert "captured updates on disk: 1 round files" in shown
    _assert_private(run_dir)


def test_sigterm_to_the_driver_alone_ends_the_run_interrupted_with_130(scenario_file, tmp_path):
    process = _start(scenario_file, tmp_path)
    try:
        run_dir = _wait_for_round(process, tmp_path, 1)
        seconds = _signal_and_time(process, signal.SIGTERM, group=False)
    finally:
        _kill_group_leftovers(process)
    assert process.returncode == 130 and seconds < EXIT_SECONDS
    assert "status: interrupted (interrupted by SIGTERM after round " in _results(run_dir)


def test_kill_9_at_round_2_of_5_then_resume_reproduces_the_uninterrupted_run_exactly(
        scenario_file, uninterrupted, tmp_path):
    process = _start(scenario_file, tmp_path)
    try:
        run_dir = _wait_for_round(process, tmp_path, 2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        process.stdout.close()
        _kill_group_leftovers(process)
    killed = _stored(run_dir)
    assert [row["status"] for row in killed["runs"]] == ["running"]
    assert len(killed["attack_results"]) < len(uninterrupted["attack_results"])  # round 2's were not done
    assert "status: interrupted (its process died after round 2 of 5" in _results(run_dir)

    _resume(run_dir)
    assert _stored(run_dir) == uninterrupted
    assert [row["status"] for row in uninterrupted["attack_results"]] == ["ok", "ok"]
