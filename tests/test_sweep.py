"""Sweep files: arms and grids become whole scenarios; every problem is one line, before anything runs."""

import re
import sys
from pathlib import Path

import pytest

from fedleak import cli
from fedleak.core.errors import FedleakError
from fedleak.sweep import load_sweep

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
BASE = """
[base]
partition = { num_clients = 2 }
federation = { rounds = 2 }
defenses = [{ name = "fp16" }]
"""


def _sweep(tmp_path, text):
    path = tmp_path / "sweep.toml"
    path.write_text(f'name = "tiny-sweep"\n{text}\n{BASE}')
    return path


def test_arms_take_overrides_and_defense_pipelines_in_order(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, """
set = ["training.lr=0.5"]
[[arms]]
name = "base"
[[arms]]
name = "none"
defenses = []
[[arms]]
name = "noisy"
defenses = [{ name = "local-dp", std = 0.1 }]
set = ["defenses.0.std=0.2", "training.lr=0.25"]
"""))
    assert list(sweep.arms) == ["base", "none", "noisy"]
    base, none, noisy = sweep.arms.values()
    assert [d.name for d in base.defenses] == ["fp16"] and base.training.lr == 0.5
    assert none.defenses == []
    assert noisy.defenses[0].config.std == 0.2 and noisy.training.lr == 0.25


def test_a_grid_expands_into_readably_named_arms(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, """
[[grids]]
name = "dp"
defenses = [{ name = "local-dp", clip_norm = 1.0, std = 0.1 }]
axes = { "defenses.0.std" = [0.01, 0.1], "defenses.0.clip_norm" = [1.0, 10.0], "defenses.0.mechanism" = ["gaussian"] }
"""))
    assert list(sweep.arms) == ["dp-std=0.01-clip_norm=1-mechanism=gaussian", "dp-std=0.01-clip_norm=10-mechanism=gaussian",
                                "dp-std=0.1-clip_norm=1-mechanism=gaussian", "dp-std=0.1-clip_norm=10-mechanism=gaussian"]
    config = sweep.arms["dp-std=0.1-clip_norm=10-mechanism=gaussian"].defenses[0].config
    assert (config.std, config.clip_norm) == (0.1, 10.0)


def test_every_arm_keeps_the_base_seed_and_data_plan(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, '[[arms]]\nname = "a"\n[[arms]]\nname = "b"\nset = ["training.lr=0.3"]\n'))
    a, b = sweep.arms.values()
    assert (a.seed, a.dataset, a.partition, a.model) == (b.seed, b.dataset, b.partition, b.model)


def test_the_resolved_sweep_holds_every_arm_in_full(tmp_path):
    import tomllib

    sweep = load_sweep(_sweep(tmp_path, '[[arms]]\nname = "a"\n'), ["federation.rounds=1"])
    resolved = tomllib.loads(sweep.to_toml())
    assert resolved["arms"] == ["a"] and resolved["scenarios"]["a"]["federation"]["rounds"] == 1


def test_the_shipped_sweeps_validate():
    quickstart = load_sweep(SCENARIOS / "sweeps" / "quickstart.toml")
    assert list(quickstart.arms) == ["none", "int8", "local-dp"]
    study = load_sweep(SCENARIOS / "sweeps" / "defenses_dlg.toml")
    assert len(study.arms) == 20 and "gaussian-std=0.01" in study.arms


@pytest.mark.parametrize(("text", "expected"), [
    ('[[arms]]\nname = "a"\nset = ["training.lr=-1"]', "arm 'a': training.lr: Input should be greater than 0"),
    ('[[arms]]\nname = "a"\ndefenses = [{ name = "int9" }]', "arm 'a': defenses[0].name: unknown defense 'int9'"),
    ('[[arms]]\nname = "a"\nset = ["training.lr"]', "arm 'a': set expects key=value, got 'training.lr'"),
    ('[[arms]]\nname = "a"\nset = ["federation.rounds.x=1"]', "arm 'a': set federation.rounds.x: 'federation.rounds' is a value (int)"),
    ('[[arms]]\nname = "a"\n[[arms]]\nname = "a"', "arm 'a': the name is taken by an earlier arm"),
    ('[[arms]]\nname = "a"\n[[arms]]\nname = "b"\nset = ["seed=1"]', "arm 'b': 'seed' differs from arm 'a'"),
    ('[[arms]]\nname = "a"\n[[arms]]\nname = "b"\nset = ["partition.num_clients=3"]', "arm 'b': 'partition' differs from arm 'a'"),
    ('[[arms]]\nname = "a"\n[[arms]]\nname = "b"\nset = ["training.batch_size=2"]', "arm 'b': 'training.batch_size' differs"),
    ('[[arms]]\nname = "a b"', "arms[0].name: String should match pattern"),
    ('[[arms]]\nname = "a"\nlr = 1', "arms[0].lr: Extra inputs are not permitted"),
    ('[[grids]]\nname = "g"\naxes = {}', "grids[0].axes: Dictionary should have at least 1 item"),
    ('[[grids]]\nname = "g"\naxes = { "training.lr" = [] }', "grids[0].axes.training.lr: expected at least one value"),
    ('[[grids]]\nname = "g"\naxes = { "name" = ["a b"] }', "grids[0] (g): arm name: String should match pattern"),
    ("", "no arms (add [[arms]] or [[grids]])"),
])
def test_a_bad_sweep_is_one_line_naming_the_arm_and_key(tmp_path, text, expected):
    with pytest.raises(FedleakError) as error:
        load_sweep(_sweep(tmp_path, text))
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_missing_base_is_named(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('name = "s"\nbase = "nowhere.toml"\n[[arms]]\nname = "a"\n')
    with pytest.raises(FedleakError, match="base: base scenario not found: .*nowhere.toml"):
        load_sweep(path)


@pytest.mark.parametrize("argv", [
    ["sweep", "missing.toml"],
    ["sweep", "{bad}", "--parallel", "0"],
    ["compare", "/nonexistent"],
    ["report", "/nonexistent"],
    ["compare", "{bad}", "--json", "--csv"],
])
def test_the_cli_rejects_bad_input_with_one_line_and_exit_2(monkeypatch, capsys, tmp_path, argv):
    bad = _sweep(tmp_path, '[[arms]]\nname = "a"\nset = ["federation.rounds=0"]')
    monkeypatch.setattr(sys, "argv", ["fedleak", *[str(bad) if a == "{bad}" else a for a in argv]])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err


def test_a_sweep_whose_arm_cannot_run_on_its_data_is_rejected_before_anything_runs(monkeypatch, capsys, tmp_path):
    bad = _sweep(tmp_path, '[[arms]]\nname = "big"\nset = ["model.name=lenet", "model.channels=65536"]')
    monkeypatch.setattr(sys, "argv", ["fedleak", "sweep", str(bad), "--out", str(tmp_path / "runs")])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    assert "arm 'big': model lenet on 1×8×8 images" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("terminal", [True, False])
def test_the_progress_view_shows_arms_by_rounds(tmp_path, terminal):
    import io

    from rich.console import Console

    from fedleak.sweep.progress import SweepView

    sweep = load_sweep(_sweep(tmp_path, '[[arms]]\nname = "a"\n[[arms]]\nname = "b"\n[[arms]]\nname = "c"\n'))
    out = io.StringIO()
    view = SweepView(Console(file=out, force_terminal=terminal, width=120, highlight=False))
    view.start(sweep, skipped=["a"], rerun={"b": "failed"})
    view.update("b", "running", {"round": 1, "accuracy": 0.5, "attacks": {"ok": 2}})
    view.update("b", "finished", {"round": 2, "accuracy": 0.75, "attacks": {"ok": 4}})
    view.stop()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())  # without colours and cursor moves
    assert "3 arms, 1 finished before" in text
    if terminal:  # the live table's last frame: a bar per arm
        assert "■■ 2/2" in text and "□□ 0/2" in text and "75.0%" in text and "4 ok" in text
    else:  # a line per change
        assert "a: skipped, round 0/2 (finished before)" in text
        assert "b: running, round 1/2, test accuracy 50.0% (failed before: running again)" in text
        assert "b: finished, round 2/2, test accuracy 75.0%" in text
