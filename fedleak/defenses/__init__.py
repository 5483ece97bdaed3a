"""Client-side defenses (one module per family) and the pipeline that applies them."""

import sys

from fedleak.core.registry import import_submodules
from fedleak.defenses.base import DEFENSES, Defense, DefensePipeline, LocalRound, PrivacyEvent

import_submodules(sys.modules[__name__])

__all__ = ["DEFENSES", "Defense", "DefensePipeline", "LocalRound", "PrivacyEvent"]
