"""fedleak: federated learning with an adversarial server that reconstructs client data.

The public API: scenarios, the core records, and the registries components add
themselves to.
"""

from fedleak.adversary import Adversary
from fedleak.attacks import ATTACKS, Attack, AttackConfig, AttackNotApplicable, Budget, Reconstruction
from fedleak.data import DATASETS, DataPlan, DatasetSplits, ImageDataset, build_plan, load_dataset
from fedleak.defenses import DEFENSES, Defense, DefensePipeline, LocalRound, PrivacyEvent
from fedleak.errors import FedleakError
from fedleak.evaluation import AttackResult, Evaluator
from fedleak.models import MODELS, ImageClassifier, ModelSpec
from fedleak.privacy import Epsilon, PrivacyLedger
from fedleak.scenario import Scenario, load_scenario, parse_scenario
from fedleak.store import ResultStore
from fedleak.updates import ClientUpdate, UpdateMetadata

__all__ = [
    "ATTACKS", "DATASETS", "DEFENSES", "MODELS",
    "Adversary", "Attack", "AttackConfig", "AttackNotApplicable", "AttackResult", "Budget",
    "ClientUpdate", "DataPlan", "DatasetSplits", "Defense", "DefensePipeline", "Epsilon", "Evaluator",
    "FedleakError", "ImageClassifier", "ImageDataset", "LocalRound", "ModelSpec", "PrivacyEvent",
    "PrivacyLedger", "Reconstruction",
    "ResultStore", "Scenario", "UpdateMetadata", "build_plan", "load_dataset", "load_scenario",
    "parse_scenario",
]
