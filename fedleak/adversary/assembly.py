"""The one place a run's adversary is put together, whatever kind of run it serves.

fedleak's own run (simulated, deployed or resumed), a user's app under ``fedleak.attach`` and
an offline re-attack (``fedleak attack``) differ in where the updates come from, not in what
attacks them: the attacks' model of the client, the ground truth results are scored against,
the store and the attack runner. Each of them opens its store (and says in it what kind of run
it is), then asks :func:`open_adversary` for the rest.
"""

from __future__ import annotations

from fedleak.adversary.adversary import Adversary
from fedleak.adversary.ground_truth import GroundTruth, PlanTruth, ReportedTruth
from fedleak.adversary.progress import Progress
from fedleak.data import build_plan, load_dataset
from fedleak.models import ModelSpec
from fedleak.results.store import ResultStore
from fedleak.runners import RUNNERS
from fedleak.scenario import Scenario


def client_model_and_truth(scenario: Scenario) -> tuple[ModelSpec, GroundTruth]:
    """The model the attacks simulate the client with, and what their results are scored against.

    An attached app (``[app]``): the app's own model, and the samples its lab clients report
    (none reported: results are stored unscored). Else the scenario's model on its dataset, and
    the data plan's batches (the dataset is loaded once per process: ``load_dataset`` caches it).
    """
    if scenario.app is not None:
        return scenario.app_model_spec(), ReportedTruth()
    splits = load_dataset(scenario.dataset)
    plan = build_plan(scenario.seed, scenario.dataset, scenario.partition)
    return scenario.model_spec(splits), PlanTruth(splits.train, plan, scenario.training)


def open_adversary(scenario: Scenario, store: ResultStore, progress: Progress | None = None,
                   variant: str | None = None) -> Adversary:
    """``scenario``'s adversary over ``store``: its model of the client and ground truth
    (:func:`client_model_and_truth`) and the runner ``scenario.runner`` names, started.

    Parameters:
        variant: stored with every result (an offline re-attack's settings); ``None`` for a live run.
    """
    model, truth = client_model_and_truth(scenario)
    runner = RUNNERS.get(scenario.runner.name)(scenario.runner)
    return Adversary(scenario, model, truth, store, runner, progress, variant)
