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

:func:`plan_reattack` makes every check first, read-only and without torch where it can (the
captures' headers, not their tensors): a refused re-attack changes nothing in the run directory.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from fedleak.adversary.progress import Progress
from fedleak.core.errors import FedleakError
from fedleak.core.updates import ClientUpdate
from fedleak.results.captures import CaptureStore
from fedleak.results.lock import DirectoryLock, is_locked
from fedleak.results.store import ResultStore
from fedleak.scenario import Scenario, apply_override, parse_scenario, read_toml

if TYPE_CHECKING:  # torch and the scoring: imported once a re-attack is known to have work
    from fedleak.adversary.adversary import Adversary

OFFLINE = "offline"
"""The label of a re-attack without ``--set`` overrides."""

_BUSY = "the run is still running (another fedleak process holds it)"


@dataclass(frozen=True)
class Selection:
    """Which stored updates to attack: ``None`` selects every stored round (or client)."""

    rounds: Collection[int] | None = None
    partitions: Collection[int] | None = None

    def selects(self, update: ClientUpdate) -> bool:
        return self.includes(update.server_round, update.partition_id)

    def includes(self, server_round: int, partition_id: int | None) -> bool:
        """Whether the update of ``partition_id`` (``None``: an aggregate) in ``server_round`` is selected."""
        return ((self.rounds is None or server_round in self.rounds)
                and (self.partitions is None or partition_id in self.partitions))


@dataclass(frozen=True)
class ReattackPlan:
    """A re-attack checked in full (:func:`plan_reattack`), nothing written yet."""

    run_dir: Path
    scenario: Scenario
    """The stored scenario with the attack as its only one."""
    variant: str
    selection: Selection
    files: tuple[tuple[int, str], ...]
    """The (round, kind) of the capture files that hold selected updates."""


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
    """Attack the stored captures of the run in ``run_dir`` again (see the module docstring):
    :func:`plan_reattack`, then :func:`run_reattack`.

    Returns:
        What was attacked; each attack's result is stored (and reported to ``progress``) as it finishes.

    Raises:
        FedleakError: as :func:`plan_reattack`, before anything is written.
    """
    return run_reattack(plan_reattack(run_dir, attack, overrides, selection, runner), progress)


def plan_reattack(run_dir: Path, attack: str, overrides: Sequence[str] = (), selection: Selection | None = None,
                  runner: str = "inline") -> ReattackPlan:
    """Check a re-attack without changing anything: the run directory, the selection against
    the captures stored (their headers), the attack's settings. A caller announces the work
    only after this, so that a refused command prints its one line and nothing else.

    Raises:
        FedleakError: not a run directory, the run still running, nothing stored that
            ``selection`` names (saying what does not match), or a bad attack setting (each one line).
    """
    run_dir, selection = Path(run_dir), selection or Selection()
    ResultStore.open_existing(run_dir).close()  # a fedleak run directory (read-only)
    if is_locked(run_dir):
        raise FedleakError(f"{run_dir}: {_BUSY}")
    files = selected_files(CaptureStore(run_dir), selection)
    scenario = reattack_scenario(run_dir, attack, overrides, runner)
    variant = ", ".join(o.strip() for o in overrides) or OFFLINE
    return ReattackPlan(run_dir, scenario, variant, selection, files)


def selected_files(captures: CaptureStore, selection: Selection) -> tuple[tuple[int, str], ...]:
    """The stored files that hold updates ``selection`` names, found from the files' headers
    (no tensors read): every round and client it names must be stored, so a typo is refused
    rather than silently attacking less than asked.

    Raises:
        FedleakError: nothing stored (then ``capture.store`` is why), a named round not stored,
            or a named client captured in none of the selected rounds (one line, listing what is).
    """
    where, stored = captures.directory.parent, captures.stored()
    if not stored:
        raise FedleakError(f"{where}: no captured update is stored (capture.store = 'none' keeps none, "
                           "'attacked' only those the run's attacks selected)")
    rounds = sorted({server_round for server_round, _ in stored})
    missing = sorted(set(selection.rounds or ()) - set(rounds))
    if missing:
        raise FedleakError(f"{where}: {_named('round', missing)} not among the rounds stored ({_listed(rounds)})")
    contents = {(r, kind): _header(captures, r, kind) for r, kind in stored
                if selection.rounds is None or r in selection.rounds}
    clients = sorted({p for entries in contents.values() for _, p in entries if p is not None})
    missing = sorted(set(selection.partitions or ()) - set(clients))
    if missing:
        scope = "the selected rounds" if selection.rounds is not None else "the stored rounds"
        raise FedleakError(f"{where}: {_named('client', missing)} not among the clients captured in {scope} "
                           f"({_listed(clients) or 'none: aggregates only'})")
    return tuple(file for file, entries in contents.items() if any(selection.includes(*e) for e in entries))


def _header(captures: CaptureStore, server_round: int, kind: str) -> list[tuple[int, int | None]]:
    """(round, partition id) of each update a capture file holds, from its header alone (numpy: no torch)."""
    with safe_open(str(captures.path(server_round, kind)), framework="numpy") as file:
        return [(entry["round"], entry["partition_id"]) for entry in json.loads(file.metadata()["updates"])]


def _named(what: str, values: list[int]) -> str:
    return f"{what} {values[0]} is" if len(values) == 1 else f"{what}s {_listed(values)} are"


def _listed(values: list[int]) -> str:
    return ", ".join(map(str, values))


def run_reattack(plan: ReattackPlan, progress: Progress | None = None) -> ReattackSummary:
    """Carry out a checked re-attack: under the run directory's lock, its results stored beside the run's own."""
    captures = CaptureStore(plan.run_dir)
    with DirectoryLock(plan.run_dir, _BUSY):
        store = ResultStore(plan.run_dir)
        try:
            adversary = _offline_adversary(plan.scenario, store, progress, plan.variant)
            updates, bytes_read, replaced = _attack_files(adversary, captures, plan.files, plan.selection)
            adversary.runner.close(wait=True)
        finally:
            store.close()
    return ReattackSummary(plan.run_dir.name, plan.variant, updates, bytes_read, replaced)


def _offline_adversary(scenario: Scenario, store: ResultStore, progress: Progress | None,
                       variant: str) -> Adversary:
    """An adversary for updates read from disk: it adds results only, each update's ε as stored;
    an attached app's scored against the samples its lab clients reported (unscored without)."""
    from fedleak.adversary.assembly import open_adversary  # torch and the scoring: only once there is work

    adversary = open_adversary(scenario, store, progress, variant)
    adversary.replay_ledger()
    return adversary


def _attack_files(adversary: Adversary, captures: CaptureStore, files: Sequence[tuple[int, str]],
                  selection: Selection) -> tuple[int, int, int]:
    """Attack the selected updates of each stored file, a round at a time (the runner batches
    them); returns how many, the bytes read and how many earlier results were replaced."""
    attacked = bytes_read = replaced = 0
    for server_round, kind in files:
        updates = [u for u in captures.read(server_round, kind) if selection.selects(u)]
        if updates:
            bytes_read += captures.path(server_round, kind).stat().st_size
            replaced += _attack_round(adversary, updates)
            attacked += len(updates)
    return attacked, bytes_read, replaced


def _attack_round(adversary: Adversary, updates: list[ClientUpdate]) -> int:
    """Submit the attack on ``updates`` (one stored file's), replacing the results of an earlier
    re-attack with the same settings; returns how many it replaced."""
    attack, variant = adversary.scenario.attacks[0].name, adversary.outcomes.variant
    assert variant is not None
    replaced = adversary.store.discard_attack_results(
        updates[0].run_id, attack, variant, [(u.server_round, str(u.node_id)) for u in updates])
    adversary.submit([job for update in updates for job in adversary.jobs_for(update, [attack])])
    return replaced
