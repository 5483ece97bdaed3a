"""Reconstruction attacks: the interface, the registry, one module per attack."""

import sys

from fedleak.attacks.base import (
    ATTACKS,
    Attack,
    AttackConfig,
    AttackNotApplicable,
    Budget,
    Reconstruction,
    Requirement,
)
from fedleak.core.registry import import_submodules
from fedleak.results.rows import AttackStatus

import_submodules(sys.modules[__name__])

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackNotApplicable",
    "AttackStatus",
    "Budget",
    "Reconstruction",
    "Requirement",
]
