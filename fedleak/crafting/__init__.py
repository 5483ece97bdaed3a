"""What a malicious server sends instead of the global model: the interface, the registry, one
module per crafting."""

import sys

from fedleak.core.registry import import_submodules
from fedleak.crafting.base import CRAFTINGS, Crafting, CraftingConfig, CraftRequest

import_submodules(sys.modules[__name__])

__all__ = ["CRAFTINGS", "CraftRequest", "Crafting", "CraftingConfig"]
