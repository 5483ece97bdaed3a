"""Reading the scenario from Flower's run config (the ``flwr run .`` path, simulated or deployed).

``[tool.flwr.app.config]`` in pyproject.toml declares the keys ``flwr run --run-config`` may set:

* ``scenario`` — the scenario file, relative to the app directory;
* ``set`` — overrides of it, as ``fedleak run --set`` takes them, separated by ``;``
  (``--run-config "set='training.lr=0.05; federation.rounds=2'"``): what ``--set`` reaches,
  a deployment reaches too; the ServerApp and every ClientApp apply the same ones;
* ``out-dir`` — where run directories are made. A relative one is resolved against
  ``$FEDLEAK_OUT_BASE`` (``/fedleak`` in fedleak's image, so the default ``runs`` is the
  compose file's runs volume, ``/fedleak/runs``), else the ServerApp process's working
  directory, and logged absolute.

Without them (``run_simulation``, or a stock app's run config) the defaults below apply. A
scenario that does not load or cannot run is one line in the ServerApp's log (``flwr log``)
and a run directory with status ``failed`` and that line as its error.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

from flwr.app import Context

from fedleak.core.errors import FedleakError
from fedleak.results.rows import RunStatus
from fedleak.results.store import ResultStore, new_run_dir
from fedleak.scenario import Scenario, load_scenario
from fedleak.scenario.preflight import check_runnable

DEFAULT_SCENARIO, DEFAULT_OUT_DIR = "scenarios/quickstart.toml", "runs"
OUT_BASE_VARIABLE = "FEDLEAK_OUT_BASE"
"""The environment variable a relative ``out-dir`` is resolved against."""

_log = logging.getLogger("flwr")  # Flower's handler: the line shows in `flwr log`


class ScenarioRejected(FedleakError):
    """The run config's scenario does not load or cannot run (stored as a failed run)."""


@functools.lru_cache(maxsize=8)
def _load(path: Path, overrides: tuple[str, ...]) -> Scenario:
    return load_scenario(path, overrides, label="run config 'set'")


def overrides_from_run_config(context: Context) -> tuple[str, ...]:
    """The ``set`` key's overrides, in order (empty ones skipped)."""
    return tuple(part.strip() for part in str(context.run_config.get("set", "")).split(";") if part.strip())


def scenario_from_run_config(context: Context, app_dir: Path) -> Scenario:
    """The run config's scenario under its ``set`` overrides (the same on the server and every client)."""
    path = app_dir / str(context.run_config.get("scenario", DEFAULT_SCENARIO))
    return _load(path, overrides_from_run_config(context))


def out_dir_from_run_config(context: Context) -> Path:
    """The absolute folder run directories are made in (module docstring)."""
    out_dir = Path(str(context.run_config.get("out-dir", DEFAULT_OUT_DIR))).expanduser()
    base = Path(os.environ.get(OUT_BASE_VARIABLE) or Path.cwd()).expanduser()
    return (base / out_dir).absolute() if not out_dir.is_absolute() else out_dir


def run_from_run_config(context: Context, app_dir: Path) -> tuple[Scenario, Path]:
    """The scenario (validated, and checked against its data) and a new run directory.

    Raises:
        ScenarioRejected: one line, logged and stored in a failed run directory first.
    """
    out_dir = out_dir_from_run_config(context)
    try:
        scenario = scenario_from_run_config(context, app_dir)
        check_runnable(scenario)
    except FedleakError as error:
        run_dir = _store_rejection(out_dir, str(context.run_config.get("scenario", DEFAULT_SCENARIO)), error)
        _log.error("fedleak: %s (stored as a failed run in %s)", error, run_dir)
        raise ScenarioRejected(str(error)) from None
    run_dir = new_run_dir(out_dir, scenario.name)
    _log.info("fedleak: storing the run in %s", run_dir)
    return scenario, run_dir


def _store_rejection(out_dir: Path, scenario: str, error: FedleakError) -> Path:
    """A run directory recording that the run never started, and why."""
    run_dir = new_run_dir(out_dir, "rejected")
    store = ResultStore(run_dir)
    try:
        store.start_run(run_dir.name, Path(scenario).stem, "")
        store.finish_run(run_dir.name, RunStatus.FAILED, str(error))
    finally:
        store.close()
    return run_dir
