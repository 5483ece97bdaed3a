"""fedleak: federated learning with an adversarial server that reconstructs client data.

The public API: scenarios, the core records, and the registries components add
themselves to. Names are imported on first use (PEP 562), so a process that needs one
part — an attack worker needs the attacks and models, not Flower, the datasets or the
defenses — does not pay for importing the rest.

The layers, bottom up: :mod:`fedleak.core` (config, registries, plugins, errors, the
captured update); the components (:mod:`~fedleak.data`, :mod:`~fedleak.models`,
:mod:`~fedleak.results` (the store: its schema, statuses and tables), :mod:`~fedleak.defenses`,
:mod:`~fedleak.attacks`, :mod:`~fedleak.crafting`, :mod:`~fedleak.runners`); :mod:`fedleak.scenario` (the schema
composing them, and the pre-flight checks); :mod:`fedleak.client` (local training) and
:mod:`fedleak.adversary` (capture → attack → score → store); :mod:`fedleak.federation`
(Flower glue, and :func:`attach` / :func:`client_mod` for a user's own Flower app) and
:mod:`fedleak.cli`. ``tests/test_layers.py`` holds the imports to that order.
"""

from fedleak.core.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(globals(), {
    "fedleak.adversary": ["Adversary"],
    "fedleak.attacks": ["ATTACKS", "Attack", "AttackConfig", "AttackNotApplicable", "Budget", "Reconstruction"],
    "fedleak.crafting": ["CRAFTINGS", "CraftRequest", "Crafting", "CraftingConfig"],
    "fedleak.data": ["DATASETS", "PARTITIONERS", "DataPlan", "DatasetSplits", "ImageDataset", "build_plan",
                     "load_dataset"],
    "fedleak.defenses": ["DEFENSES", "Defense", "DefensePipeline", "LocalRound", "PrivacyEvent"],
    "fedleak.core.errors": ["FedleakError"],
    "fedleak.core.registry": ["Registry"],
    "fedleak.adversary.ground_truth": ["PlanTruth"],
    "fedleak.results.rows": ["AttackResult", "AttackStatus", "Epsilon", "RejectedReply", "ReplyStatus", "RunStatus"],
    "fedleak.models": ["MODELS", "ImageClassifier", "ModelSpec"],
    "fedleak.adversary.privacy": ["PrivacyLedger"],
    "fedleak.runners": ["RUNNERS", "AttackRunner"],
    "fedleak.scenario": ["Scenario", "load_scenario", "parse_scenario"],
    "fedleak.results": ["ResultStore"],
    "fedleak.core.updates": ["ClientUpdate", "UpdateMetadata"],
    "fedleak.federation.attached": ["AttachedStrategy", "attach"],
    "fedleak.federation.lab": ["client_mod", "recorded"],
})
