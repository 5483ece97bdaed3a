"""Compare runs round by round: utility, ε and what each attack recovered, per arm.

Read-only: every figure comes from the runs' databases. Runs are *paired* when their
stored data-plan digests are equal (the same training pool, shards, batch schedule,
seed and initial model: :mod:`fedleak.core.digests`); otherwise the comparison says
which ingredient differs, and calls the runs unpaired.

An arm *defends* when at least one attack was scored against it and no attack recovered
any image in any round (:mod:`fedleak.adversary.metrics`: MSE < 1e-3, or SSIM > 0.4 and
above the mean image's). Its utility cost is the baseline's final test accuracy minus its
own; the baseline is the arm without defenses, else the most accurate arm.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fedleak.core.errors import FedleakError
from fedleak.results.collection import RunDir, collect_runs
from fedleak.results.rows import AttackStatus
from fedleak.results.store import ATTACK_LABEL, ResultStore

# An aggregate (what SecAgg+ unmasks: partition −1) is another target than one client's update.
_ATTACKS_PER_ROUND = f"""
SELECT round, {ATTACK_LABEL} || CASE WHEN partition_id < 0 THEN ' (aggregate)' ELSE '' END AS attack,
       COUNT(*) AS attacked, SUM(status = '{AttackStatus.OK}') AS ok,
       SUM(status = '{AttackStatus.UNSCORED}') AS unscored,
       AVG(success_rate) AS success_rate, AVG(psnr) AS psnr, MAX(best_psnr) AS best_psnr, AVG(ssim) AS ssim,
       AVG(label_accuracy) AS label_accuracy, AVG(prior_psnr) AS prior_psnr, AVG(prior_ssim) AS prior_ssim,
       AVG(leakage) AS leakage, MAX(leakage) AS worst_leakage, MAX(recovered_rate) AS recovered_rate
FROM attack_results WHERE run_id = ? GROUP BY 1, 2 ORDER BY 1, 2
"""
_IMAGES = f"""
SELECT round, partition_id, {ATTACK_LABEL} AS attack, image, psnr FROM attack_results
WHERE run_id = ? AND image IS NOT NULL ORDER BY round, partition_id, attack
"""
_ROUNDS = """
SELECT round, test_accuracy, epsilon, model_epsilon FROM rounds WHERE run_id = ? AND round > 0 ORDER BY round
"""


@dataclass(frozen=True)
class RunRecord:
    """What one run stored, as the comparison reads it."""

    label: str
    path: Path
    status: str
    error: str | None
    defenses: list[dict[str, Any]]
    data_plan: dict[str, Any] | None
    plan_digest: str | None
    rounds: list[dict[str, Any]]
    attacks: list[dict[str, Any]]
    """Per (round, attack): means over the attacked updates, and the worst of them."""
    images: list[dict[str, Any]]
    """Every stored image grid: round, partition_id, attack, image (relative to ``path``), psnr."""

    @classmethod
    def read(cls, run: RunDir) -> RunRecord:
        """Raises:
            FedleakError: the database holds no run, or lacks the columns a comparison reads.
        """
        store = ResultStore.open_existing(run.path)
        try:
            runs = store.query("SELECT run_id, status, error, scenario, data_plan, plan_digest FROM runs")
            if not runs:
                raise FedleakError(f"{run.path}: no run stored")
            row = runs[0]
            rounds = store.query(_ROUNDS, row["run_id"])
            attacks = store.query(_ATTACKS_PER_ROUND, row["run_id"])
            images = store.query(_IMAGES, row["run_id"])
        except sqlite3.Error as error:  # read-only: an older database cannot gain the columns here
            raise FedleakError(f"{run.path}: cannot be compared ({error}; written by an earlier fedleak?)") from None
        finally:
            store.close()
        defenses = tomllib.loads(row["scenario"] or "").get("defenses", [])
        plan = json.loads(row["data_plan"]) if row["data_plan"] else None
        return cls(run.label, run.path, row["status"], row["error"], defenses, plan, row["plan_digest"],
                   rounds, attacks, images)


@dataclass(frozen=True)
class ArmSummary:
    """One arm over the whole run."""

    arm: str
    status: str
    final_accuracy: float | None
    accuracy_cost: float | None
    """The baseline's final accuracy minus this arm's (positive: this arm costs utility)."""
    epsilon: float | None
    model_epsilon: float | None
    worst_leakage: float | None
    """The largest leakage score of any attacked update, over rounds and attacks."""
    best_psnr: float | None
    recovered_rate: float | None
    """The largest share of an update's images any attack recovered."""
    scored: int
    """Attack results with scores."""
    defends: bool | None
    """No image recovered by any attack in any round (``None``: no attack was scored)."""


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: per round × arm × attack, and per arm."""

    runs: list[RunRecord]
    paired: bool
    unpaired_reason: str | None
    rows: list[dict[str, Any]]
    summary: list[ArmSummary]
    baseline: str | None
    best_defending: str | None = None
    """The defending arm with the smallest utility cost."""

    def as_json(self) -> dict[str, Any]:
        return {"paired": self.paired, "unpaired_reason": self.unpaired_reason, "baseline": self.baseline,
                "best_defending_arm": self.best_defending,
                "runs": [{"arm": r.label, "path": str(r.path), "status": r.status, "error": r.error}
                         for r in self.runs],
                "rounds": self.rows, "summary": [asdict(s) for s in self.summary]}


def points(cost: float | None) -> str:
    """A utility cost as the change in accuracy, in percentage points (``-2.3 pt``: 2.3 lower)."""
    return "–" if cost is None else f"{round(-100 * cost, 1) + 0.0:+.1f} pt"


def compare(paths: list[Path]) -> Comparison:
    """Read the runs in ``paths`` (sweep or run directories) and compare them.

    Raises:
        FedleakError: a path holds no run.
    """
    runs = [RunRecord.read(run) for run in collect_runs(paths)]
    paired, reason = pairing(runs)
    baseline = _baseline(runs)
    summary = [_summarise(run, baseline) for run in runs]
    defending = [s for s in summary if s.defends]
    best = min(defending, key=lambda s: s.accuracy_cost if s.accuracy_cost is not None else float("inf"),
               default=None)
    return Comparison(runs, paired, reason, _rows(runs), summary, baseline.label if baseline else None,
                      best.arm if best else None)


def pairing(runs: list[RunRecord]) -> tuple[bool, str | None]:
    """Whether the runs share one data plan; if not, the first ingredient that differs."""
    missing = [run.label for run in runs if run.plan_digest is None]
    if missing:
        return False, f"no data plan stored for {missing[0]} (a run from before fedleak stored one)"
    first = runs[0]
    for run in runs[1:]:
        if run.plan_digest != first.plan_digest:
            assert run.data_plan is not None and first.data_plan is not None
            keys = sorted(k for k in {*first.data_plan, *run.data_plan}
                          if first.data_plan.get(k) != run.data_plan.get(k))
            return False, f"{run.label} and {first.label} differ in {', '.join(keys)}"
    return True, None


def _rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per round × arm × attack (one row without an attack where none ran)."""
    rounds = sorted({r["round"] for run in runs for r in [*run.rounds, *run.attacks]})
    rows = []
    for server_round in rounds:
        for run in runs:
            utility = next((r for r in run.rounds if r["round"] == server_round), {})
            base = {"round": server_round, "arm": run.label, "test_accuracy": utility.get("test_accuracy"),
                    "epsilon": utility.get("epsilon"), "model_epsilon": utility.get("model_epsilon")}
            attacks = [a for a in run.attacks if a["round"] == server_round] or [{"attack": None}]
            rows += [{**base, **{k: v for k, v in attack.items() if k != "round"}} for attack in attacks]
    return rows


def _baseline(runs: list[RunRecord]) -> RunRecord | None:
    undefended = [run for run in runs if not run.defenses and run.rounds]
    if undefended:
        return undefended[0]
    trained = [run for run in runs if run.rounds]
    return max(trained, key=lambda run: run.rounds[-1]["test_accuracy"] or 0.0, default=None)


def _summarise(run: RunRecord, baseline: RunRecord | None) -> ArmSummary:
    last = run.rounds[-1] if run.rounds else {}
    accuracy = last.get("test_accuracy")
    reference = baseline.rounds[-1]["test_accuracy"] if baseline else None
    scored = [a for a in run.attacks if a["ok"]]
    worst = lambda key: max((a[key] for a in scored if a[key] is not None), default=None)  # noqa: E731
    recovered = worst("recovered_rate")
    return ArmSummary(
        arm=run.label, status=run.status, final_accuracy=accuracy,
        accuracy_cost=None if accuracy is None or reference is None else reference - accuracy,
        epsilon=last.get("epsilon"), model_epsilon=last.get("model_epsilon"),
        worst_leakage=worst("worst_leakage"), best_psnr=worst("best_psnr"), recovered_rate=recovered,
        scored=sum(int(a["ok"]) for a in scored), defends=None if recovered is None else recovered == 0,
    )
