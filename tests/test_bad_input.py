"""Bad input, on the command line or in a scenario: one line naming the problem, exit code 2, at
once, and nothing already stored changed. Stored reasons and the console stay plain text."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest
from flwr.app import Error
from flwr.common.logger import warn_deprecated_feature
from test_reattack import stored_run  # noqa: F401 - the fixture: a run directory with captures of round 1

from fedleak import cli
from fedleak.core.config import MAX_PARAMETERS, MAX_SEED
from fedleak.core.errors import FedleakError, first_line
from fedleak.federation import simulation

from conftest import imported_after, tiny_scenario
from test_reply_boundary import Federation

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.toml")
RAY_TIP = ("Tip: In future versions of Ray, Ray will no longer override accelerator visible devices env var if "
           "num_gpus=0 or num_gpus=None (default). To enable this behavior and turn off this error message, set "
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=0")


def _refused(monkeypatch, capsys, *argv: str) -> str:
    """The one line of a refused command (exit code 2, nothing on stdout)."""
    monkeypatch.setattr(sys, "argv", ["fedleak", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, err
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, (out, err)
    return err.removeprefix("error: ").rstrip("\n")


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory`` (hidden ones too): its bytes and modification time."""
    return {str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_a_refused_re_attack_prints_one_line_naming_the_mismatch_and_changes_no_file(
        monkeypatch, capsys, stored_run):  # noqa: F811 - the imported fixture
    run = str(stored_run)
    before = _snapshot(stored_run)
    for selection, expected in [
        (["--client", "99"], "client 99 is not among the clients captured in the stored rounds (0, 1)"),
        (["--round", "99"], "round 99 is not among the rounds stored (1)"),
        (["--round", "1", "--round", "5", "--round", "7"], "rounds 5, 7 are not among the rounds stored (1)"),
        (["--round", "1", "--client", "1", "--client", "4"],
         "client 4 is not among the clients captured in the selected rounds (0, 1)"),
        (["--set", "iterationz=3"], "attacks[0].iterationz: Extra inputs are not permitted"),
    ]:
        message = _refused(monkeypatch, capsys, "attack", run, "--attack", "idlg", *selection)
        assert message.endswith(expected) and "capture.store" not in message, message
    assert _snapshot(stored_run) == before  # byte for byte, mtimes too, and no .lock file made
    for capture in (stored_run / "captures").iterdir():
        capture.unlink()
    before = _snapshot(stored_run)
    message = _refused(monkeypatch, capsys, "attack", run, "--attack", "idlg")
    assert message == f"{run}: no captured update is stored (capture.store = 'none' keeps none, 'attacked' only " \
                      "those the run's attacks selected)"
    assert _snapshot(stored_run) == before


@pytest.mark.parametrize(("argv", "expected"), [
    (["--seed", "-1"], f"--seed: expected 0 to {MAX_SEED} (as a scenario's seed), got -1"),
    (["--seed", str(MAX_SEED + 1)], f"--seed: expected 0 to {MAX_SEED} (as a scenario's seed), got {MAX_SEED + 1}"),
    (["--num-classes", "100000000"],  # 25.6 GB for one float32 copy: refused before it is allocated
     f"audit: mlp on 1×28×28 images with 100,000,000 classes: 6,500,050,240 parameters; at most {MAX_PARAMETERS:,}"),
])
def test_audit_takes_a_runs_seeds_and_model_sizes_only(monkeypatch, capsys, argv, expected):
    assert _refused(monkeypatch, capsys, "audit", "mlp", *argv) == expected


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "{scenarios}"], "scenario file {scenarios} is a directory; expected a .toml file"),
    (["sweep", "{scenarios}"], "sweep file {scenarios} is a directory; expected a .toml file"),
    (["run", QUICKSTART, "--set", "dataset.name=mnist", "--set", "dataset.data_root='{file}'"],
     "dataset.data_root: {file} is a file; expected a folder"),
    (["run", QUICKSTART, "--set", "dataset.name=cifar10", "--set", "dataset.data_root='{file}'"],
     "dataset.data_root: {file} is a file; expected a folder"),
])
def test_a_folder_for_a_file_and_a_file_for_a_folder_are_named_as_such(monkeypatch, capsys, tmp_path, argv, expected):
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "file").write_text("")
    paths = {"scenarios": tmp_path / "scenarios", "file": tmp_path / "file"}
    message = _refused(monkeypatch, capsys, *(arg.format(**paths) for arg in argv), "--out", str(tmp_path / "runs"))
    assert expected.format(**paths) in message and "not found" not in message and "does not exist" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "scenarios"]


@pytest.mark.parametrize(("argv", "echoed"), [
    (["run", QUICKSTART, "--set", 'dataset.name="a\\nb"'], "unknown dataset 'a\\nb'"),
    (["run", QUICKSTART, "--set", 'model.name="vgg\\r\\u001b[31m"'], "unknown model 'vgg\\r\\x1b[31m'"),
    (["run", "missing\nfile.toml"], "scenario file not found: missing\\nfile.toml"),
])
def test_echoed_values_are_escaped_so_an_error_stays_one_line(monkeypatch, capsys, argv, echoed):
    assert echoed in _refused(monkeypatch, capsys, *argv)
    assert str(FedleakError("a\nb\tc\x00")) == "a\\nb\\tc\\x00"  # every message, whoever raises it


@pytest.mark.parametrize("where", ["{tmp}/file/certs", "/proc/nonexistent/certs", "{tmp}/file"])
def test_deploy_certs_into_a_folder_it_cannot_make_is_one_line(monkeypatch, capsys, tmp_path, where):
    if where.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    (tmp_path / "file").write_text("mine")
    target = where.format(tmp=tmp_path)
    message = _refused(monkeypatch, capsys, "deploy", "certs", target)
    assert message.startswith(target) and ("cannot create it" in message or "is a file" in message), message
    assert (tmp_path / "file").read_text() == "mine"


@pytest.mark.parametrize("argv", [["resume", "{missing}"], ["attack", "{missing}", "--attack", "idlg"],
                                  ["sweep", "{missing}"], ["results", "{missing}"]])
def test_a_missing_path_is_refused_before_torch_is_imported(tmp_path, argv):
    """torch takes 1.5-2 s to import on 2 cores: 'no such run' must not wait for it."""
    args = [arg.format(missing=tmp_path / "nowhere") for arg in argv]
    code = (f"import sys\nfrom fedleak.cli import main\nsys.argv = ['fedleak', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit as exit_:\n    assert exit_.code == 2, exit_.code\n"
            "else:\n    raise AssertionError('accepted')")
    assert imported_after(code, ("torch",)) == []


@pytest.mark.parametrize("reason", [
    "\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=4242, ip=127.0.0.1)\nTraceback (most recent call last):",
    "\x1b]0;title\x07\x1b[1;31mRuntimeError\x1b[0m: boom\x1b(B\tagain",
])
def test_a_stored_client_crash_reason_is_plain_text(tmp_path, reason):
    federation = Federation(tmp_path, tiny_scenario(partition={"num_clients": 2}, attacks=[]))
    federation.round([Error(code=0, reason=reason), federation.honest_content(1)])
    stored = federation.rows()[0]["reason"]
    assert stored.startswith("client error: ") and stored.isprintable() and "\x1b" not in stored, stored
    assert "[36m" not in stored and "[0m" not in stored
    assert first_line("\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=1)\nmore") == "ray::ClientAppActor.run() (pid=1)"


@pytest.mark.parametrize("verbose", [False, True])
def test_without_verbose_the_console_shows_no_line_of_flowers_or_rays(monkeypatch, caplog, recwarn, verbose):
    """Ray's FutureWarning and Flower's run_simulation banner (both emitted as in a real run, where
    Ray starts and Flower's simulation runs) only with --verbose; Ray's own log lines likewise."""
    ray_options: dict = {}

    def start_local_ray(**options):
        ray_options.update(options)
        warnings.warn(RAY_TIP, FutureWarning, stacklevel=1)

    def run_simulation(**_):
        warn_deprecated_feature("The `run_simulation` function is deprecated")
        logging.getLogger("flwr").warning("fraction_evaluate is set to 0.0")

    monkeypatch.setattr(simulation, "start_local_ray", start_local_ray)
    monkeypatch.setattr("flwr.simulation.run_simulation", run_simulation)
    level = logging.getLogger("flwr").level
    simulation.run_simulated(object(), tiny_scenario(), verbose=verbose)  # type: ignore[arg-type]
    logged = caplog.text  # what reached Flower's console handler (pytest's handler sits beside it)
    assert ("DEPRECATED FEATURE" in logged, "fraction_evaluate" in logged) == (verbose, verbose), logged
    assert any("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO" in str(w.message) for w in recwarn) == verbose
    assert ("logging_level" not in ray_options) == verbose and ray_options["log_to_driver"] == verbose
    assert logging.getLogger("flwr").level == level  # restored for whatever the process does next
