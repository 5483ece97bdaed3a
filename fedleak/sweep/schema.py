"""The sweep file: one base scenario, named arms, and grids expanded into arms.

```toml
name = "quickstart-defenses"
base = "../quickstart.toml"        # a scenario file (relative to this file), or a [base] table
set = ["federation.rounds=3"]      # overrides for every arm (the --set language)

[[arms]]
name = "none"                      # the base as it is

[[arms]]
name = "int8"
defenses = [{ name = "int8" }]     # replaces the base's [[defenses]] pipeline

[[grids]]                          # one arm per combination: noise-std=0.01-clip_norm=1, …
name = "noise"
defenses = [{ name = "local-dp", std = 0.01 }]
axes = { "defenses.0.std" = [0.01, 0.1], "defenses.0.clip_norm" = [1.0, 10.0] }
```

An arm is built as: the base, then the sweep's ``set``, then the arm's (or grid's)
``defenses``, then its ``set``, then a grid's axis values. Every arm must keep what fixes
the clients, their batches and the initial model (the seed, the dataset, the partition,
the model and the batch schedule), so the arms of a sweep are a paired comparison.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import Field, ValidationError, field_validator

from fedleak.core.config import Strict
from fedleak.core.errors import FedleakError
from fedleak.scenario import Scenario, apply_override, first_error, parse_scenario, read_toml

ARM_NAME = r"^[A-Za-z0-9_.,=+-]+$"
"""Arm names are run-directory names: letters, digits and ``_.,=+-``."""

PAIRING_KEYS = ("seed", "dataset", "partition", "model", "training.algorithm", "training.batch_size",
                "training.local_epochs", "training.local_steps")
"""What an arm may not change: it fixes the clients, their batches and the initial model."""


class Arm(Strict):
    """One configuration to compare: overrides of the base and/or a defense pipeline."""

    name: str = Field(pattern=ARM_NAME, max_length=120)
    set: list[str] = Field(default_factory=list)
    defenses: list[dict[str, Any]] | None = None
    """The arm's ``[[defenses]]`` pipeline in place of the base's (``[]``: none)."""


class Grid(Strict):
    """Arms for every combination of the axes' values, named ``<name>-<key>=<value>-…``."""

    name: str = Field(pattern=ARM_NAME, max_length=60)
    set: list[str] = Field(default_factory=list)
    defenses: list[dict[str, Any]] | None = None
    axes: dict[str, list[Any]] = Field(min_length=1)
    """Dotted keys (as in ``set``) and the values each takes."""

    @field_validator("axes")
    @classmethod
    def _values_to_take(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in axes.items() if not values]
        if empty:
            raise ValueError(f"{empty[0]}: expected at least one value")
        return axes

    def arms(self) -> list[Arm]:
        short = _short_keys(list(self.axes))
        arms = []
        for values in itertools.product(*self.axes.values()):
            label = "-".join(f"{short[key]}={_label(value)}" for key, value in zip(self.axes, values))
            overrides = [f"{key}={_literal(value)}" for key, value in zip(self.axes, values)]
            arms.append(Arm(name=f"{self.name}-{label}", set=[*self.set, *overrides], defenses=self.defenses))
        return arms


class SweepFile(Strict):
    """A sweep file as written (validated; the arms' scenarios are checked by :func:`load_sweep`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: str | dict[str, Any]
    """A scenario file (relative to the sweep file) or an inline scenario table."""
    set: list[str] = Field(default_factory=list)
    arms: list[Arm] = Field(default_factory=list)
    grids: list[Grid] = Field(default_factory=list)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: every arm's whole scenario, in order."""

    name: str
    source: Path
    arms: dict[str, Scenario]

    def to_toml(self) -> str:
        """The resolved sweep (stored in the sweep directory): each arm's scenario in full."""
        scenarios = {name: scenario_table(scenario) for name, scenario in self.arms.items()}
        return tomli_w.dumps({"name": self.name, "source": str(self.source), "arms": list(self.arms),
                              "scenarios": scenarios})


def scenario_table(scenario: Scenario) -> dict[str, Any]:
    """A scenario as the table its TOML holds."""
    return scenario.model_dump(mode="json", exclude_none=True, by_alias=True)


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> Sweep:
    """Read a sweep file and build every arm's scenario (``overrides`` apply to all arms).

    Raises:
        FedleakError: one line naming the file, the arm and the key.
    """
    path = Path(path)
    try:
        sweep = SweepFile.model_validate(read_toml(path, "sweep file"))
    except ValidationError as error:
        raise FedleakError(f"{path}: {first_error(error)}") from None
    base = _base_table(sweep, path)
    arms = list(sweep.arms)
    for index, grid in enumerate(sweep.grids):
        try:
            arms += grid.arms()
        except ValidationError as error:  # a value that cannot be part of a directory name
            raise FedleakError(f"{path}: grids[{index}] ({grid.name}): arm {first_error(error)}") from None
    if not arms:
        raise FedleakError(f"{path}: no arms (add [[arms]] or [[grids]])")
    scenarios: dict[str, Scenario] = {}
    reference: Scenario | None = None
    for arm in arms:
        where = f"{path}: arm '{arm.name}'"
        if arm.name in scenarios:
            raise FedleakError(f"{where}: the name is taken by an earlier arm")
        scenario = _arm_scenario(base, [*sweep.set, *(overrides or [])], arm, where)
        reference = reference or scenario
        _check_paired(reference, scenario, where, next(iter(scenarios), arm.name))
        scenarios[arm.name] = scenario
    return Sweep(sweep.name, path.resolve(), scenarios)


def _base_table(sweep: SweepFile, path: Path) -> dict[str, Any]:
    if isinstance(sweep.base, dict):
        return sweep.base
    base_path = (path.parent / sweep.base) if not Path(sweep.base).is_absolute() else Path(sweep.base)
    try:
        return read_toml(base_path, "base scenario")
    except FedleakError as error:
        raise FedleakError(f"{path}: base: {error}") from None


def _arm_scenario(base: dict[str, Any], common: list[str], arm: Arm, where: str) -> Scenario:
    table = copy.deepcopy(base)
    try:
        for override in common:
            apply_override(table, override, "set")
        if arm.defenses is not None:
            table["defenses"] = copy.deepcopy(arm.defenses)
        for override in arm.set:
            apply_override(table, override, "set")
    except FedleakError as error:
        raise FedleakError(f"{where}: {error}") from None
    return parse_scenario(table, source=where)


def _check_paired(reference: Scenario, scenario: Scenario, where: str, reference_name: str) -> None:
    """Raise if ``scenario`` changes what fixes the clients' batches or the initial model."""
    for key in PAIRING_KEYS:
        if _value(reference, key) != _value(scenario, key):
            raise FedleakError(f"{where}: '{key}' differs from arm '{reference_name}'; the arms of a sweep share "
                               f"the seed, data, batches and initial model (compare separate runs instead)")


def _value(scenario: Scenario, key: str) -> Any:
    value: Any = scenario
    for part in key.split("."):
        value = getattr(value, part)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each axis by its last key part, or in full where two axes share it."""
    leaves = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves)}


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _literal(value: Any) -> str:
    """``value`` as a TOML literal (what ``set`` reads back)."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


