"""Which runs a results command reads: a sweep directory's arms, or run directories.

A sweep directory (written by ``fedleak sweep``) holds ``sweep.toml`` — the resolved
sweep, with its arms in order — and one run directory per arm, named after it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from fedleak.core.errors import FedleakError
from fedleak.results.store import DATABASE

SWEEP_FILE = "sweep.toml"


@dataclass(frozen=True)
class RunDir:
    """One run to read, with the label it is shown under."""

    label: str
    path: Path


def collect_runs(paths: list[Path]) -> list[RunDir]:
    """The runs in ``paths`` (sweep directories expand into their arms), labelled uniquely.

    Raises:
        FedleakError: a path is neither a run nor a sweep directory, or a sweep has no arm that ran.
    """
    if not paths:
        raise FedleakError("give a sweep directory or one or more run directories")
    found: list[RunDir] = []
    for path in paths:
        if (path / SWEEP_FILE).is_file():
            found += sweep_arms(path, prefix=f"{path.name}/" if len(paths) > 1 else "")
        elif (path / DATABASE).is_file():
            found.append(RunDir(path.name, path))
        else:
            raise FedleakError(f"{path}: neither a run directory (no {DATABASE}) nor a sweep directory "
                               f"(no {SWEEP_FILE})")
    labels = [run.label for run in found]
    duplicate = next((label for label in labels if labels.count(label) > 1), None)
    if duplicate:
        raise FedleakError(f"two runs are both labelled '{duplicate}'; give their sweep directories instead")
    return found


def sweep_arms(sweep_dir: Path, prefix: str = "") -> list[RunDir]:
    """The arms of a sweep directory that have a database, in the sweep's order."""
    try:
        arms = tomllib.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))["arms"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError) as error:
        raise FedleakError(f"{sweep_dir / SWEEP_FILE}: not a resolved sweep ({error})") from None
    runs = [RunDir(f"{prefix}{arm}", sweep_dir / arm) for arm in arms if (sweep_dir / arm / DATABASE).is_file()]
    if not runs:
        raise FedleakError(f"{sweep_dir}: no arm has run yet (fedleak sweep runs them)")
    return runs
