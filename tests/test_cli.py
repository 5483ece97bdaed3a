"""Every user error ends with one line naming the problem, exit code 2, no traceback."""

import sqlite3
import sys
from pathlib import Path

import pytest

from fedleak import cli
from fedleak.results.store import ResultStore

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml")


def _fail(monkeypatch, capsys, *argv):
    monkeypatch.setattr(sys, "argv", ["fedleak", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "missing.toml"], "scenario file not found: missing.toml"),
        (["run", QUICKSTART, "--set", "dataset.name=imagenet"], "dataset.name: unknown dataset 'imagenet'; allowed:"),
        (["run", QUICKSTART, "--set", "model.name=vgg"], "model.name: unknown model 'vgg'; allowed: convnet, lenet, mlp"),
        (["run", QUICKSTART, "--set", "attacks.0.name=magic"], "attacks[0].name: unknown attack 'magic'"),
        (["run", QUICKSTART, "--set", "federation.rounds=many"], "federation.rounds: Input should be a valid integer"),
        (["run", QUICKSTART, "--set", "partition.num_clients=0"], "partition.num_clients: Input should be greater than or equal to 1"),
        (["run", QUICKSTART, "--set", "training.lr"], "--set expects key=value"),
        (["run", QUICKSTART, "--set", "dataset.name=mnist", "--set", "dataset.data_root=/nonexistent"], "dataset.data_root: no mnist idx files"),
        (["run", QUICKSTART, "--set", "threat.random_query.rounds=[1]"], 'threat.random_query: now a crafting: [crafting] name = "random-query" with its rounds'),
        (["run", QUICKSTART, "--set", 'crafting={name="random-query", rounds=[1]}'], 'crafting: sending crafted weights needs threat.server = "malicious"'),
        (["run", QUICKSTART, "--set", "threat.server=malicious", "--set", 'crafting={name="random-query", rounds=[1]}', "--set", 'defenses=[{name="secagg-plus"}]'], "crafting: not supported with secure aggregation"),
        (["run", QUICKSTART, "--set", "dataset.normalization=image"], "dataset.normalization: Input should be 'channel' or 'pixel'"),
        (["results", "/nonexistent"], "not a run directory"),
        (["run"], "Missing argument 'SCENARIO'"),
        # Values that used to validate and then fail after Ray had started (or hang).
        (["run", QUICKSTART, "--set", "seed=-1"], "seed: Input should be greater than or equal to 0"),
        (["run", QUICKSTART, "--set", "attacks.0.seed=-1"], "attacks[0].seed: Input should be greater than or equal to 0"),
        (["run", QUICKSTART, "--set", "attacks.0.time_budget_s=inf"], "attacks[0].time_budget_s: Input should be a finite number"),
        (["run", QUICKSTART, "--set", "model.name=mlp", "--set", "model.widths=[0]"], "model.widths[0]: Input should be greater than or equal to 1"),
        (["run", QUICKSTART, "--set", "model.name=convnet", "--set", "model.channels=[0]"], "model.channels[0]: Input should be greater than or equal to 1"),
        (["run", QUICKSTART, "--set", "training.lr=1e300"], "training.lr: Input should be less than or equal to 1000"),
        (["run", QUICKSTART, "--set", "training.lr=inf"], "training.lr: Input should be a finite number"),
        (["run", QUICKSTART, "--set", "federation.rounds=1e20"], "federation.rounds:"),
        (["run", QUICKSTART, "--set", "partition.name=dirichlet", "--set", "partition.alpha=inf", "--set", "partition.min_partition_size=0"], "partition.alpha: Input should be a finite number"),
        (["run", QUICKSTART, "--set", "partition.name=dirichlet", "--set", "partition.min_partition_size=0"], "partition.min_partition_size: Input should be greater than or equal to 1"),
        (["run", QUICKSTART, "--set", "capture.clients=[4]"], "capture.clients: 4 is beyond the last one (3)"),
        (["run", QUICKSTART, "--set", "capture.rounds=[9]"], "capture.rounds: 9 is beyond the last one (3)"),
        # Malformed --set paths and component names of the wrong type.
        (["run", QUICKSTART, "--set", "name.x=1"], "--set name.x: 'name' is a value (str), not a table or list"),
        (["run", QUICKSTART, "--set", "seed.x.y=1"], "--set seed.x.y: 'seed' is a value (int), not a table or list"),
        (["run", QUICKSTART, "--set", "model.name={a=1}"], "model.name: expected the model's name as a string, got dict"),
        (["run", QUICKSTART, "--set", "attacks.0.name=[1]"], "attacks[0].name: expected the attack's name as a string, got list"),
        # What only the data can tell (checked before Flower or Ray start).
        (["run", QUICKSTART, "--set", "model.name=lenet", "--set", "model.channels=65536"], "model lenet on 1×8×8 images: 214,752,821,258 parameters"),
        (["run", QUICKSTART, "--set", "training.algorithm=fedavg", "--set", "training.local_epochs=1000000"], "training: client 0 would take 375,000,000 local steps"),
        (["run", QUICKSTART, "--set", "partition.num_clients=1500", "--set", "partition.name=dirichlet", "--set", "partition.min_partition_size=1"], "partition: dirichlet gave some client fewer than min_partition_size=1"),
    ],
)
def test_user_errors(monkeypatch, capsys, argv, expected):
    assert expected in _fail(monkeypatch, capsys, *argv)


def test_undecodable_files_and_unusable_folders_are_user_errors(monkeypatch, capsys, tmp_path):
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    assert "latin1.toml: not UTF-8 text (byte 11)" in _fail(monkeypatch, capsys, "run", str(tmp_path / "latin1.toml"))
    (tmp_path / "file").write_text("")
    assert "is a file, not a folder" in _fail(monkeypatch, capsys, "run", QUICKSTART, "--out", str(tmp_path / "file"))
    assert "is a file, not a folder" in _fail(monkeypatch, capsys, "run", QUICKSTART, "--out", str(tmp_path / "file" / "runs"))
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    assert "cannot read" in _fail(monkeypatch, capsys, "run", QUICKSTART, "--set", "dataset.name=mnist",
                                  "--set", f"dataset.data_root={str(mnist)!r}")


@pytest.mark.parametrize(("database", "expected"), [
    (b"", "not a fedleak results database (no table attack_results, rounds, runs, updates)"),
    (b"SQLite? no: a text file", "cannot be read as a database: file is not a database"),
    (None, "not a fedleak results database (no table attack_results, rounds, runs, updates)"),  # another schema
])
def test_results_reads_without_writing_and_rejects_what_fedleak_did_not_write(monkeypatch, capsys, tmp_path,
                                                                               database, expected):
    if database is None:
        other = sqlite3.connect(tmp_path / "results.sqlite")
        other.execute("CREATE TABLE notes (text TEXT)")
        other.commit()
        other.close()
    else:
        (tmp_path / "results.sqlite").write_bytes(database)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert expected in _fail(monkeypatch, capsys, "results", str(tmp_path))
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # nothing created, nothing changed


def test_results_of_a_finished_run_creates_nothing(monkeypatch, capsys, tmp_path):
    run_dir = _stored_run(tmp_path, "finished", None)
    before = sorted(p.name for p in run_dir.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["fedleak", "results", str(run_dir)])
    cli.main()
    assert "status: finished" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.rglob("*")) == before


def _stored_run(out, status, error):
    from fedleak.results.store import ResultStore, new_run_dir

    run_dir = new_run_dir(out, "stub")
    store = ResultStore(run_dir)
    store.start_run(run_dir.name, "stub", 'name = "stub"\n')
    store.finish_run(run_dir.name, status, error)
    store.close()
    return run_dir


def test_a_failed_run_ends_with_one_line_and_exit_code_1(monkeypatch, capsys, tmp_path):
    import fedleak.federation

    def failing_simulation(scenario, run_dir, progress=None, verbose=False, resume=False, ray_address=None):
        store = ResultStore(run_dir)
        store.start_run(run_dir.name, scenario.name, scenario.to_toml())
        store.finish_run(run_dir.name, "failed", "round 1: no reply was accepted (4 of 4 rejected or failed)")
        store.close()
        return run_dir

    monkeypatch.setattr(fedleak.federation, "simulate", failing_simulation)
    monkeypatch.setattr(sys, "argv", ["fedleak", "run", QUICKSTART, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err == "error: run failed: round 1: no reply was accepted (4 of 4 rejected or failed)\n"


def test_nothing_stored_is_lost_by_a_bad_run(monkeypatch, capsys, tmp_path):
    _fail(monkeypatch, capsys, "run", QUICKSTART, "--out", str(tmp_path), "--set", "model.name=vgg")
    assert list(tmp_path.iterdir()) == []  # validation happens before a run directory exists
