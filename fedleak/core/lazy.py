"""Package attributes imported on first use (PEP 562).

A package that re-exports names from heavy modules (Flower, torchmetrics, Opacus) makes
importing any of its submodules pay for all of them; with :func:`lazy_exports` a process
imports only the homes of the names it touches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], homes: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package whose names live in ``homes``.

    Parameters
    ----------
    namespace:
        The package's ``globals()``; a name, once imported, is stored there so later
        look-ups skip ``__getattr__``.
    homes:
        Module path → the public names it defines.

    Returns
    -------
    The three module attributes, to be unpacked at the package's top level.
    """
    module_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(import_module(module_of[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return sorted(module_of), __getattr__, __dir__
