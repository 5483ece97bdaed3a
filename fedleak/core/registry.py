"""Name → component registries.

Attacks, defenses, models and datasets each keep one :class:`Registry`. A component
registers itself with a decorator in its own module; the package ``__init__`` imports
every submodule with :func:`import_submodules`, so adding a component touches one new
file and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Generic, TypeVar

from fedleak.core.errors import FedleakError

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from a public name to a component (a class or a factory)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``component`` under ``name`` (names are unique)."""

        def decorate(component: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = component
            return component

        return decorate

    def get(self, name: str) -> T:
        """Return the component, or raise a one-line error listing the allowed names."""
        try:
            return self._entries[name]
        except KeyError:
            raise FedleakError(
                f"unknown {self.kind} '{name}'; allowed: {', '.join(self.names()) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_submodules(package: ModuleType) -> None:
    """Import every module of ``package`` so that their ``register`` decorators run."""
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
