"""fedleak: federated learning with an adversarial server that reconstructs client data.

The public API: scenarios, the core records, and the registries components add
themselves to. Names are imported on first use (PEP 562), so a process that needs one
part — an attack worker needs the attacks and models, not Flower, the datasets or the
defenses — does not pay for importing the rest.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "fedleak.adversary": ["Adversary"],
    "fedleak.attacks": ["ATTACKS", "Attack", "AttackConfig", "AttackNotApplicable", "Budget", "Reconstruction"],
    "fedleak.data": ["DATASETS", "DataPlan", "DatasetSplits", "ImageDataset", "build_plan", "load_dataset"],
    "fedleak.defenses": ["DEFENSES", "Defense", "DefensePipeline", "LocalRound", "PrivacyEvent"],
    "fedleak.errors": ["FedleakError"],
    "fedleak.evaluation": ["AttackResult", "Evaluator"],
    "fedleak.models": ["MODELS", "ImageClassifier", "ModelSpec"],
    "fedleak.privacy": ["Epsilon", "PrivacyLedger"],
    "fedleak.scenario": ["Scenario", "load_scenario", "parse_scenario"],
    "fedleak.store": ["ResultStore"],
    "fedleak.updates": ["ClientUpdate", "UpdateMetadata"],
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'fedleak' has no attribute {name!r}")
    value = getattr(import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

