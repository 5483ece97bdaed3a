"""Tables of a run (per round: utility and what each attack recovered) and of a comparison of runs."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.markup import escape
from rich.table import Table

from fedleak.results.compare import ArmSummary, Comparison, points
from fedleak.results.rows import AttackStatus
from fedleak.results.store import ATTACK_LABEL, ResultStore

_ATTACK_SUMMARY = f"""
SELECT round, {ATTACK_LABEL} AS attack, COUNT(*) AS attacks, SUM(status = '{AttackStatus.OK}') AS ok,
       SUM(status = '{AttackStatus.UNSCORED}') AS unscored,
       AVG(psnr) AS psnr, AVG(ssim) AS ssim, AVG(mse) AS mse,
       AVG(label_accuracy) AS label_accuracy,
       AVG(label_count_accuracy) AS label_count_accuracy, AVG(success_rate) AS success_rate,
       AVG(ssim_success_rate) AS ssim_success_rate, AVG(prior_psnr) AS prior_psnr, AVG(leakage) AS leakage,
       AVG(seconds) AS seconds
FROM attack_results WHERE run_id = ? GROUP BY 1, 2 ORDER BY 1, 2
"""


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def round_table(store: ResultStore, run_id: str) -> Table:
    """One row per (round, attack): means over the attacked updates.

    ε is the worst client's after that round, against the server (``ε``) and for the
    released model (``ε model``); "–" where no accounted mechanism applies. Rounds in
    which a malicious server sent random parameters are labelled "query". ``s/attack`` is
    each attack's share of the batch it ran in (a batch of 8 taking 4 s: 0.5 s each).
    ``unscored``: reconstructions without a ground truth to score them against (an attached
    app's clients that report no samples). ``mean img dB`` is the PSNR of the trivial guess
    (the training pool's mean image) on the same images, and ``leakage`` the SSIM gain over
    it (0: no better than the guess; see :mod:`fedleak.adversary.metrics`).
    """
    rounds = {r["round"]: r for r in store.query(
        "SELECT round, test_accuracy, epsilon, model_epsilon FROM rounds WHERE run_id = ?", run_id)}

    def utility(server_round: int) -> list[str]:
        r = rounds.get(server_round, {})
        return [fmt(r.get("test_accuracy"), ".1%"), fmt(r.get("epsilon"), ".3g"), fmt(r.get("model_epsilon"), ".3g")]

    queried = {r["round"] for r in store.query(
        "SELECT DISTINCT round FROM updates WHERE run_id = ? AND (crafted IS NOT NULL OR random_query)", run_id)}

    def label(server_round: int) -> str:  # the global model did not move in a random-query round
        return f"{server_round} query" if server_round in queried else str(server_round)

    table = Table(title=f"run {run_id}", caption="query: a malicious random-parameter round" if queried else None)
    for column in ("round", "test acc", "ε", "ε model", "attack", "ok/total", "PSNR dB", "mean img dB", "leakage",
                   "SSIM", "MSE", "label acc", "label counts", "MSE<1e-3", "SSIM>0.4", "s/attack"):
        table.add_column(column, justify="right", no_wrap=column == "attack")
    rows = store.query(_ATTACK_SUMMARY, run_id)
    for row in rows:
        table.add_row(
            label(row["round"]), *utility(row["round"]), escape(row["attack"]),  # "idlg [lr=1]" is not markup
            attacks_done(row), fmt(row["psnr"], ".2f"), fmt(row["prior_psnr"], ".2f"),
            fmt(row["leakage"], ".2f"), fmt(row["ssim"], ".3f"),
            fmt(row["mse"], ".2e"), fmt(row["label_accuracy"], ".0%"), fmt(row["label_count_accuracy"], ".0%"),
            fmt(row["success_rate"], ".0%"), fmt(row["ssim_success_rate"], ".0%"), fmt(row["seconds"], ".1f"),
        )
    attacked = {row["round"] for row in rows}
    for server_round in sorted(set(rounds) - attacked - {0}):
        table.add_row(label(server_round), *utility(server_round), *["–"] * 12)
    return table


def attacks_done(row: dict[str, Any], total: str = "attacks") -> str:
    """``ok/total``, and how many of the rest are unscored (reconstructed, no ground truth)."""
    unscored = f" ({row['unscored']} unscored)" if row.get("unscored") else ""
    return f"{row['ok']}/{row[total]}{unscored}"


def comparison_tables(comparison: Comparison, every_round: bool = False) -> list[Table]:
    """Per round × arm × attack, then one row per arm (see :mod:`fedleak.results.compare`).

    Unless ``every_round``, the per-round table keeps the rounds with an attack result and
    the last one (a 40-round sweep of 20 arms would otherwise print 800 rows)."""
    shown = _shown_rounds(comparison, every_round)
    notes = [] if comparison.paired else [f"UNPAIRED: {comparison.unpaired_reason}"]
    if len(shown) < len({row["round"] for row in comparison.rows}):
        notes.append("rounds without attacks left out (--every-round shows them)")
    rounds = Table(title="per round", caption="; ".join(notes) or None)
    for column in ("round", "arm", "test acc", "ε", "ε model", "attack", "ok/total", "MSE<1e-3", "PSNR dB",
                   "best dB", "mean img dB", "leakage", "SSIM", "label acc"):
        rounds.add_column(column, justify="right", no_wrap=column in ("arm", "attack"))
    for row in (row for row in comparison.rows if row["round"] in shown):
        attack = row.get("attack")
        scores = ["–"] * 8 if attack is None else [
            attacks_done(row, "attacked"), fmt(row["success_rate"], ".0%"), fmt(row["psnr"], ".1f"),
            fmt(row["best_psnr"], ".1f"), fmt(row["prior_psnr"], ".1f"), fmt(row["leakage"], ".2f"),
            fmt(row["ssim"], ".3f"), fmt(row["label_accuracy"], ".0%")]
        rounds.add_row(str(row["round"]), row["arm"], fmt(row["test_accuracy"], ".1%"), fmt(row["epsilon"], ".3g"),
                       fmt(row["model_epsilon"], ".3g"), escape(attack or "–"), *scores)
    arms = Table(title="per arm", caption=_verdict(comparison))
    for column in ("arm", "status", "final acc", "cost", "ε", "ε model", "worst leakage", "best dB", "recovered",
                   "defends"):
        arms.add_column(column, justify="right", no_wrap=column == "arm")
    for s in comparison.summary:
        arms.add_row(*summary_cells(s))
    return [rounds, arms]


def summary_cells(s: ArmSummary) -> list[str]:
    """One arm's summary row, as the terminal table and the HTML report show it."""
    return [s.arm, s.status, fmt(s.final_accuracy, ".1%"), points(s.accuracy_cost), fmt(s.epsilon, ".3g"),
            fmt(s.model_epsilon, ".3g"), fmt(s.worst_leakage, ".2f"), fmt(s.best_psnr, ".1f"),
            fmt(s.recovered_rate, ".0%"), {True: "yes", False: "no", None: "not attacked"}[s.defends]]


def _shown_rounds(comparison: Comparison, every_round: bool) -> set[int]:
    rounds = {row["round"] for row in comparison.rows}
    if every_round or not rounds:
        return rounds
    return {row["round"] for row in comparison.rows if row.get("attack")} | {max(rounds)}


def _verdict(comparison: Comparison) -> str:
    """Which arms defend, and the one at the smallest utility cost."""
    defending = [s.arm for s in comparison.summary if s.defends]
    if not defending:
        return "no arm defends: in every attacked arm some attack recovered an image"
    baseline = f" (cost against {comparison.baseline})" if comparison.baseline else ""
    return f"defend: {', '.join(defending)}; at the smallest utility cost{baseline}: {comparison.best_defending}"


def comparison_csv(comparison: Comparison) -> str:
    """The per-round rows as CSV, with whether the runs are paired."""
    columns = ["round", "arm", "test_accuracy", "epsilon", "model_epsilon", "attack", "attacked", "ok",
               "success_rate", "psnr", "best_psnr", "ssim", "label_accuracy", "prior_psnr", "prior_ssim",
               "leakage", "worst_leakage", "recovered_rate", "paired"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in comparison.rows:
        writer.writerow({**row, "paired": comparison.paired})
    return out.getvalue()
