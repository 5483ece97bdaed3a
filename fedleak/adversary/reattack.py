"""Offline re-attacks: a stored run's captured updates attacked again, without the federation.

A run keeps the weights each captured update was sent and returned (``captures/``,
:mod:`fedleak.results.captures`, under ``capture.store``). :func:`reattack` reads them back,
runs one attack with its own settings on those the selection names, and stores its results
beside the run's own: scored against the same ground truth (re-derived from the stored
scenario's data plan; for an attached app, the samples its lab clients reported, stored with
the captures), with the ε each update was stored with, and labelled by the settings
(``variant``: the ``--set`` overrides, ``offline`` without any) so ``fedleak results`` shows
``inverting`` and ``inverting [iterations=8000]`` side by side. Re-running the same attack
with the same settings replaces its earlier rows instead of adding duplicates.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedleak.adversary.adversary import Adversary
from fedleak.adversary.evaluation import Evaluator, GroundTruth, ReportedTruth
from fedleak.adversary.progress import Progress
from fedleak.core.errors import FedleakError
from fedleak.core.updates import ClientUpdate
from fedleak.data import build_plan, load_dataset
from fedleak.results.captures import CaptureStore
from fedleak.results.lock import DirectoryLock
from fedleak.results.store import ResultStore
from fedleak.runners import RUNNERS
from fedleak.scenario import Scenario, apply_override, parse_scenario, read_toml

OFFLINE = "offline"
"""The label of a re-attack without ``--set`` overrides."""


@dataclass(frozen=True)
class Selection:
    """Which stored updates to attack: ``None`` selects every stored round (or client)."""

    rounds: Collection[int] | None = None
    partitions: Collection[int] | None = None

    def selects(self, update: ClientUpdate) -> bool:
        return ((self.rounds is None or update.server_round in self.rounds)
                and (self.partitions is None or update.partition_id in self.partitions))


@dataclass(frozen=True)
class ReattackSummary:
    """What a re-attack read and stored."""

    run_id: str
    variant: str
    updates: int
    """Captured updates attacked."""
    bytes_read: int
    """Size of the capture files they were read from."""
    replaced: int
    """Results of an earlier re-attack with the same settings, replaced."""


def reattack_scenario(run_dir: Path, attack: str, overrides: Sequence[str] = (), runner: str = "inline") -> Scenario:
    """The stored scenario with ``attack`` as its only attack: the scenario's own settings for
    it (if it had that attack) under ``overrides`` (``key=value``, as ``--set``), on ``runner``.

    Raises:
        FedleakError: no stored scenario, or one line naming the bad attack key.
    """
    table = read_toml(Path(run_dir) / "scenario.toml", "stored scenario")
    own = next((dict(a) for a in table.get("attacks", []) if isinstance(a, dict) and a.get("name") == attack), {})
    settings: dict[str, Any] = {**own, "name": attack}
    for override in overrides:
        apply_override(settings, override)
    table["attacks"] = [settings]
    table["runner"] = {"name": runner}
    return parse_scenario(table, source=f"{run_dir}: --attack {attack}")


def reattack(run_dir: Path, attack: str, overrides: Sequence[str] = (), selection: Selection | None = None,
             runner: str = "inline", progress: Progress | None = None) -> ReattackSummary:
    """Attack the stored captures of the run in ``run_dir`` again (see the module docstring).

    Returns:
        What was attacked; each attack's result is stored (and reported to ``progress``) as it finishes.

    Raises:
        FedleakError: not a run directory, the run still running, a bad attack setting, or
            nothing stored that ``selection`` names (each one line).
    """
    run_dir, selection = Path(run_dir), selection or Selection()
    ResultStore.open_existing(run_dir).close()  # a fedleak run directory, before anything is written
    scenario = reattack_scenario(run_dir, attack, overrides, runner)
    variant = ", ".join(o.strip() for o in overrides) or OFFLINE
    captures = CaptureStore(run_dir)
    files = [(r, kind) for r, kind in captures.stored() if selection.rounds is None or r in selection.rounds]
    if not files:
        raise _nothing_selected(captures)
    with DirectoryLock(run_dir, "the run is still running (another fedleak process holds it)"):
        store = ResultStore(run_dir)
        try:
            adversary = _offline_adversary(scenario, store, runner, progress, variant)
            updates, bytes_read, replaced = _attack_files(adversary, captures, files, selection)
            adversary.runner.close(wait=True)
        finally:
            store.close()
    return ReattackSummary(run_dir.name, variant, len(updates), bytes_read, replaced)


def _offline_adversary(scenario: Scenario, store: ResultStore, runner: str, progress: Progress | None,
                       variant: str) -> Adversary:
    """An adversary for updates read from disk: it adds results only, each update's ε as stored;
    an attached app's scored against the samples its lab clients reported (unscored without)."""
    truth: GroundTruth
    if scenario.app is not None:
        spec, truth = scenario.app_model_spec(), ReportedTruth()
    else:
        splits = load_dataset(scenario.dataset)
        spec = scenario.model_spec(splits)
        truth = Evaluator(splits.train, build_plan(scenario.seed, scenario.dataset, scenario.partition),
                          scenario.training)
    adversary = Adversary(scenario, spec, truth, store, RUNNERS.get(runner)(scenario.runner), progress, variant)
    adversary.replay_ledger()
    return adversary


def _attack_files(adversary: Adversary, captures: CaptureStore, files: list[tuple[int, str]],
                  selection: Selection) -> tuple[list[ClientUpdate], int, int]:
    """Attack the selected updates of each stored file, a round at a time (the runner batches
    them); returns them, the bytes read and how many earlier results were replaced."""
    attacked: list[ClientUpdate] = []
    bytes_read = replaced = 0
    for server_round, kind in files:
        updates = [u for u in captures.read(server_round, kind) if selection.selects(u)]
        if updates:
            bytes_read += captures.path(server_round, kind).stat().st_size
            replaced += _attack_round(adversary, updates)
            attacked.extend(updates)
    if not attacked:
        raise _nothing_selected(captures)
    return attacked, bytes_read, replaced


def _attack_round(adversary: Adversary, updates: list[ClientUpdate]) -> int:
    """Submit the attack on ``updates`` (one stored file's), replacing the results of an earlier
    re-attack with the same settings; returns how many it replaced."""
    attack, variant = adversary.scenario.attacks[0].name, adversary.variant
    assert variant is not None
    replaced = adversary.store.discard_attack_results(
        updates[0].run_id, attack, variant, [(u.server_round, str(u.node_id)) for u in updates])
    adversary.submit([job for update in updates for job in adversary.jobs_for(update, [attack])])
    return replaced


def _nothing_selected(captures: CaptureStore) -> FedleakError:
    stored = sorted({r for r, _ in captures.stored()})
    return FedleakError(f"{captures.directory.parent}: no captured update matches the selection (rounds "
                        f"stored: {', '.join(map(str, stored)) or 'none'}; capture.store = 'none' keeps none)")
