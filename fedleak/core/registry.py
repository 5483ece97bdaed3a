"""Name → component registries, open to plugins.

Every kind of component — attacks, defenses, models, datasets, partitioners, runners —
keeps one :class:`Registry`. A component registers itself with a decorator in its own
module; fedleak's packages import their submodules with :func:`import_submodules`, and
other packages add theirs through a Python entry point in the registry's group
(``fedleak.attacks``, ``fedleak.models``, …) or a scenario's ``import = [...]`` list
(:mod:`fedleak.core.plugins`). Adding a component touches one new file and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any, Generic, TypeVar

from fedleak.core.errors import FedleakError

C = TypeVar("C")
_E = TypeVar("_E")

ENTRY_POINT_PREFIX = "fedleak."
"""A registry of ``kind`` reads plugins from the entry-point group ``fedleak.<kind>s``."""


class DuplicateComponent(FedleakError):
    """Two components claim one name (fedleak's own and a plugin's, or two plugins')."""


class Registry(Generic[C]):
    """A mapping from a public name to a component: a class (or object) with a ``Config``.

    Parameters
    ----------
    kind:
        What the entries are (``"model"``), for messages; the entry-point group is
        ``fedleak.<kind>s``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = f"{ENTRY_POINT_PREFIX}{kind}s"
        self._resolve: Callable[[str], C] | None = None
        self._entries: dict[str, C] = {}
        self._resolved: dict[str, C] = {}

    def register(self, name: str) -> Callable[[_E], _E]:
        """Decorator that registers a component under ``name``.

        Raises:
            DuplicateComponent: ``name`` is taken.
        """

        def decorate(component: _E) -> _E:
            if name in self._entries:
                raise DuplicateComponent(
                    f"{self.kind} '{name}' is registered twice: by {_origin(self._entries[name])} "
                    f"and by {_origin(component)}"
                )
            if not hasattr(component, "Config"):
                raise TypeError(f"{self.kind} '{name}' ({_origin(component)}) has no Config class")
            self._entries[name] = component  # type: ignore[assignment]
            return component

        return decorate

    def resolver(self, resolve: Callable[[str], C]) -> Callable[[str], C]:
        """Decorator installing the one function that builds the component for a name that is
        not registered but says where one lives (a name with a colon: ``"torchvision:resnet18"``,
        ``"my_pkg.models:Net"``). Resolved components are kept, so each is built once."""
        if self._resolve is not None:
            raise DuplicateComponent(f"{self.kind} names with a colon have a resolver already")
        self._resolve = resolve
        return resolve

    def get(self, name: str) -> C:
        """The component called ``name``.

        Raises:
            FedleakError: one line: an unknown name (listing the allowed ones), or a name
            with a colon that does not resolve.
        """
        _load_plugins(self)  # first, so a plugin claiming a built-in name is an error, not ignored
        if name in self._entries:
            return self._entries[name]
        if self._resolve is not None and ":" in name:
            if name not in self._resolved:
                self._resolved[name] = self._resolve(name)
            return self._resolved[name]
        raise FedleakError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        """The message for a name this registry does not know."""
        extra = " or MODULE:CLASS" if self._resolve is not None else ""
        return f"unknown {self.kind} '{name}'; allowed: {', '.join(self.names()) or '(none)'}{extra}"

    def names(self) -> list[str]:
        """The registered names (fedleak's and its plugins'), sorted."""
        _load_plugins(self)
        return sorted(self._entries)


def _origin(component: object) -> str:
    return f"{getattr(component, '__module__', '?')}.{getattr(component, '__qualname__', component)}"


def _load_plugins(registry: Registry[Any]) -> None:
    from fedleak.core.plugins import load_entry_points  # importlib.metadata: only when a name is looked up

    load_entry_points(registry.group)


def import_submodules(package: ModuleType) -> None:
    """Import every module of ``package`` so that their ``register`` decorators run."""
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
