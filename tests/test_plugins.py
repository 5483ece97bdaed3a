"""Components from outside fedleak: entry points, a scenario's import list, duplicate names.

Each case runs in a fresh process: registering a plugin changes the process's registries.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedleak.results.store import ResultStore

pytestmark = pytest.mark.xdist_group("test_plugins")  # its module fixture runs once, on one worker

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fedleak-plugin-example"


def _fedleak(*args: str, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "fedleak.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example plugin installed by pip into a folder of its own (put on PYTHONPATH)."""
    source, target = tmp_path_factory.mktemp("source") / EXAMPLE.name, tmp_path_factory.mktemp("site")
    shutil.copytree(EXAMPLE, source)  # the build writes beside the sources: not into the checkout
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


def test_the_installed_example_plugin_adds_a_model_and_a_dataset_a_scenario_uses(installed_example, tmp_path):
    done = _fedleak("run", str(EXAMPLE / "scenario.toml"), "--out", str(tmp_path / "runs"), cwd=tmp_path,
                    pythonpath=installed_example)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    store = ResultStore.open_existing(run_dir)
    try:
        rows = store.query("SELECT attack, status, psnr FROM attack_results")
        scenario = store.query("SELECT scenario FROM runs")[0]["scenario"]
    finally:
        store.close()
    assert 'name = "tiny-cnn"' in scenario and 'name = "stripes"' in scenario
    assert [(row["attack"], row["status"]) for row in rows] == [("idlg", "ok")] * 2
    assert all(row["psnr"] is not None for row in rows)


def test_without_the_plugin_its_names_are_one_line_errors(tmp_path):
    error = _one_line_error(_fedleak("run", str(EXAMPLE / "scenario.toml"), cwd=tmp_path))
    assert "dataset.name: unknown dataset 'stripes'; allowed: cifar10" in error


def _write_scenario(folder: Path, text: str) -> Path:
    path = folder / "scenario.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_an_import_list_registers_a_users_attack_before_validation(tmp_path):
    (tmp_path / "my_attacks.py").write_text(textwrap.dedent("""
        from fedleak.attacks import ATTACKS, Attack, AttackConfig

        class NoiseConfig(AttackConfig):
            scale: float = 1.0

        @ATTACKS.register("noise")
        class Noise(Attack):
            Config = NoiseConfig
    """))
    scenario = _write_scenario(tmp_path, """
        import = ["my_attacks"]
        [[attacks]]
        name = "noise"
        scale = "loud"
    """)
    # The attack is known (its own key is what fails), and nothing ran.
    error = _one_line_error(_fedleak("run", str(scenario), cwd=tmp_path, pythonpath=tmp_path))
    assert "attacks[0].scale: Input should be a valid number" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("imports, expected", [
    ('["no_such_module"]', "import[0]: cannot import 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'"),
    ('["broken"]', "import[0]: cannot import 'broken': ZeroDivisionError: division by zero"),
    ('["steals_lenet"]', "import[0]: 'steals_lenet': model 'lenet' is registered twice: by fedleak.models.lenet.LeNet and by steals_lenet.Impostor"),
    ('"my_attacks"', "import: Input should be a valid tuple"),
])
def test_a_bad_import_list_is_one_line(tmp_path, imports, expected):
    (tmp_path / "broken.py").write_text("1 / 0\n")
    (tmp_path / "steals_lenet.py").write_text(textwrap.dedent("""
        from torch import nn
        from fedleak.models import MODELS, ModelConfig

        @MODELS.register("lenet")
        class Impostor(nn.Module):
            Config = ModelConfig
    """))
    scenario = _write_scenario(tmp_path, f"import = {imports}\n")
    assert expected in _one_line_error(_fedleak("run", str(scenario), cwd=tmp_path, pythonpath=tmp_path))


def test_a_broken_entry_point_is_one_line_naming_the_plugin(tmp_path):
    # A distribution on the path whose fedleak.models entry point fails to import.
    info = tmp_path / "badplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[fedleak.models]\nbad = badplugin_models\n")
    (tmp_path / "badplugin_models.py").write_text("raise RuntimeError('no GPU driver')\n")
    error = _one_line_error(_fedleak("audit", "lenet", cwd=tmp_path, pythonpath=tmp_path))
    assert "plugin 'bad' (badplugin_models, entry point fedleak.models) cannot be loaded: RuntimeError: no GPU driver" in error
