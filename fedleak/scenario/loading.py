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
from fedleak.scenario.schema import Scenario, first_error, validate_scenario


def load_scenario(path: str | Path, overrides: Iterable[str] = (), label: str = "--set") -> Scenario:
    """Read, override and validate a scenario file (``label`` names where the overrides came from).

    Raises:
        FedleakError: one line naming the file, the key and what is allowed.
    """
    table = read_toml(path, "scenario file")
    for override in overrides:
        apply_override(table, override, label)
    return parse_scenario(table, source=str(path))


def read_toml(path: str | Path, kind: str) -> dict[str, Any]:
    """The table in a TOML file (``kind`` names the file in messages).

    Raises:
        FedleakError: missing, a folder, unreadable, not UTF-8 or not TOML (one line).
    """
    path = Path(path)
    if path.is_dir():
        raise FedleakError(f"{kind} {path} is a directory; expected a .toml file")
    if not path.is_file():
        raise FedleakError(f"{kind} not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FedleakError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise FedleakError(f"{path}: not UTF-8 text (byte {error.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as error:
        raise FedleakError(f"{path}: invalid TOML: {error}") from None


def parse_scenario(table: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        return validate_scenario(table)
    except ValidationError as error:
        more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
        raise FedleakError(f"{source}: {first_error(error)}{more}") from None


def apply_override(table: dict[str, Any], override: str, label: str = "--set") -> None:
    """Apply one ``dotted.key=value`` override; the value is read as a TOML literal
    (``3``, ``true``, ``[1, 2]``) and otherwise taken as a plain string. ``label`` names
    where the override came from in messages."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FedleakError(f"{label} expects key=value, got '{override}'")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    set_key(table, key, value, label)


def set_key(table: dict[str, Any], key: str, value: Any, label: str = "--set") -> None:
    """Set the dotted ``key`` (``a.b.0.c``: tables by name, lists by index) to ``value``."""
    *parents, leaf = key.split(".")
    if "" in (*parents, leaf):
        raise FedleakError(f"{label} {key}: empty part in the key (write a.b.c)")
    node: Any = table
    for depth, part in enumerate(parents):
        node = _child(node, part, f"{label} {key}", ".".join(parents[: depth + 1]))
    if isinstance(node, list):
        node[_index(node, leaf, f"{label} {key}")] = value
    else:
        node[leaf] = value


def _child(node: Any, part: str, where: str, path: str) -> Any:
    """The table or list at ``part`` of ``node`` (a new table if absent): what ``path`` names."""
    child = node[_index(node, part, where)] if isinstance(node, list) else node.setdefault(part, {})
    if not isinstance(child, dict | list):
        raise FedleakError(f"{where}: '{path}' is a value ({type(child).__name__}), not a table or list")
    return child


def _index(node: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise FedleakError(f"{where}: '{part}' is not an index of a list of {len(node)}")
    return int(part)
