"""Reading the scenario from Flower's run config (the ``flwr run .`` path).

``[tool.flwr.app.config]`` in pyproject.toml names ``scenario`` (relative to the app
directory) and ``out-dir``; ``flwr run . --run-config "scenario='scenarios/x.toml'"``
overrides them. Without them (``run_simulation``, or a stock app's run config) the
defaults below apply.
"""

from __future__ import annotations

import functools
from pathlib import Path

from flwr.app import Context

from fedleak.results.store import new_run_dir
from fedleak.scenario import Scenario, load_scenario
from fedleak.scenario.preflight import check_runnable

DEFAULT_SCENARIO, DEFAULT_OUT_DIR = "scenarios/quickstart.toml", "runs"


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> Scenario:
    return load_scenario(path)


def scenario_from_run_config(context: Context, app_dir: Path) -> Scenario:
    return _load(app_dir / str(context.run_config.get("scenario", DEFAULT_SCENARIO)))


def run_from_run_config(context: Context, app_dir: Path) -> tuple[Scenario, Path]:
    """The scenario (validated, and checked against its data) and a new run directory."""
    scenario = scenario_from_run_config(context, app_dir)
    check_runnable(scenario)
    out_dir = Path(str(context.run_config.get("out-dir", DEFAULT_OUT_DIR))).expanduser()
    return scenario, new_run_dir(out_dir, scenario.name)
