"""Reading a scenario: a TOML file, ``--set key=value`` overrides, validation.

Any problem becomes a one-line :class:`~fedleak.core.errors.FedleakError` naming the
file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fedleak.core.errors import FedleakError
from fedleak.scenario.schema import Scenario, first_error


def load_scenario(path: str | Path, overrides: Iterable[str] = ()) -> Scenario:
    """Read, override and validate a scenario file.

    Raises:
        FedleakError: one line naming the file, the key and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise FedleakError(f"scenario file not found: {path}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FedleakError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FedleakError(f"{path}: not UTF-8 text (byte {error.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise FedleakError(f"{path}: invalid TOML: {error}") from None
    for override in overrides:
        apply_override(table, override)
    return parse_scenario(table, source=str(path))


def parse_scenario(table: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(table)
    except ValidationError as error:
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise FedleakError(f"{source}: {first_error(error)}{more}") from None


def apply_override(table: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override; the value is read as a TOML literal
    (``3``, ``true``, ``[1, 2]``) and otherwise taken as a plain string."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FedleakError(f"--set expects key=value, got '{override}'")
    *parents, leaf = key.split(".")
    if "" in (*parents, leaf):
        raise FedleakError(f"--set {key}: empty part in the key (write a.b.c)")
    node: Any = table
    for depth, part in enumerate(parents):
        node = _child(node, part, key, ".".join(parents[: depth + 1]))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(node, list):
        node[_index(node, leaf, key)] = value
    else:
        node[leaf] = value


def _child(node: Any, part: str, key: str, path: str) -> Any:
    """The table or list at ``part`` of ``node`` (a new table if absent): what ``path`` names."""
    child = node[_index(node, part, key)] if isinstance(node, list) else node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise FedleakError(f"--set {key}: '{path}' is a value ({type(child).__name__}), not a table or list")
    return child


def _index(node: list[Any], part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise FedleakError(f"--set {key}: '{part}' is not an index of a list of {len(node)}")
    return int(part)
