"""Components from outside fedleak: entry points and a scenario's ``import`` list.

A package adds components by registering them in a module that fedleak imports:

* **entry points** — in the package's ``pyproject.toml``::

      [project.entry-points."fedleak.models"]
      my-models = "my_pkg.models"

  one group per kind (``fedleak.attacks``, ``fedleak.craftings``, ``fedleak.defenses``,
  ``fedleak.models``, ``fedleak.datasets``, ``fedleak.partitioners``, ``fedleak.runners``). A group's
  modules are imported the first time its registry is asked for a name, so installing
  a plugin is enough and a process that never looks a model up never imports it.
* **a scenario's list** — ``import = ["my_pkg.models"]`` at the top of the scenario,
  for code that is not installed as a package: the modules must be importable (on
  ``PYTHONPATH``, which the simulation's client and attack workers inherit). They are
  imported before the scenario's components are validated.

Either way a module that fails to import, or registers a name that is taken, is one
line naming the plugin.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points

from fedleak.core.errors import FedleakError, first_line

_loaded_groups: set[str] = set()


def load_entry_points(group: str) -> None:
    """Import every entry point of ``group`` (once per process)."""
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)  # first: a plugin that looks a name up while importing must not recurse
    for entry in entry_points(group=group):
        try:
            entry.load()
        except FedleakError as error:
            raise FedleakError(f"plugin '{entry.name}' ({entry.value}, entry point {group}): {error}") from None
        except Exception as error:  # noqa: BLE001 - a broken plugin is bad input, reported in one line
            raise FedleakError(f"plugin '{entry.name}' ({entry.value}, entry point {group}) cannot be loaded: "
                               f"{type(error).__name__}: {first_line(error)}") from None


def import_modules(modules: Iterable[str], key: str = "import") -> None:
    """Import each module named (a scenario's ``import`` list), so its components register.

    Raises:
        FedleakError: one line naming the module that could not be imported and why.
    """
    for index, module in enumerate(modules):
        if module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except FedleakError as error:
            raise FedleakError(f"{key}[{index}]: '{module}': {error}") from None
        except Exception as error:  # noqa: BLE001 - the user's module: any failure is one line
            raise FedleakError(f"{key}[{index}]: cannot import '{module}': "
                               f"{type(error).__name__}: {first_line(error)}") from None
