"""Every user error ends with one line naming the problem, exit code 2, no traceback."""

import sys
from pathlib import Path

import pytest

from fedleak import cli

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
        (["run", QUICKSTART, "--set", "threat.random_query.rounds=[1]"], 'threat.random_query.rounds: sending crafted weights needs server = "malicious"'),
        (["run", QUICKSTART, "--set", "threat.server=malicious", "--set", "threat.random_query.rounds=[1]", "--set", 'defenses=[{name="secagg-plus"}]'], "threat.random_query: not supported with secure aggregation"),
        (["run", QUICKSTART, "--set", "dataset.normalization=image"], "dataset.normalization: Input should be 'channel' or 'pixel'"),
        (["results", "/nonexistent"], "not a run directory"),
        (["run"], "Missing argument 'SCENARIO'"),
    ],
)
def test_user_errors(monkeypatch, capsys, argv, expected):
    assert expected in _fail(monkeypatch, capsys, *argv)


def test_nothing_stored_is_lost_by_a_bad_run(monkeypatch, capsys, tmp_path):
    _fail(monkeypatch, capsys, "run", QUICKSTART, "--out", str(tmp_path), "--set", "model.name=vgg")
    assert list(tmp_path.iterdir()) == []  # validation happens before a run directory exists
