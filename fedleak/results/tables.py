"""Per-round tables of a run: utility and what each attack recovered."""

from __future__ import annotations

from rich.table import Table

from fedleak.results.store import ResultStore

_ATTACK_SUMMARY = """
SELECT round, attack, COUNT(*) AS attacks, SUM(status = 'ok') AS ok,
       AVG(psnr) AS psnr, AVG(ssim) AS ssim, AVG(mse) AS mse,
       AVG(label_accuracy) AS label_accuracy,
       AVG(label_count_accuracy) AS label_count_accuracy, AVG(success_rate) AS success_rate,
       AVG(ssim_success_rate) AS ssim_success_rate,
       AVG(seconds) AS seconds
FROM attack_results WHERE run_id = ? GROUP BY round, attack ORDER BY round, attack
"""


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def round_table(store: ResultStore, run_id: str) -> Table:
    """One row per (round, attack): means over the attacked updates.

    ε is the worst client's after that round, against the server (``ε``) and for the
    released model (``ε model``); "–" where no accounted mechanism applies. Rounds in
    which a malicious server sent random parameters are labelled "query". ``s/attack`` is
    each attack's share of the batch it ran in (a batch of 8 taking 4 s: 0.5 s each).
    """
    rounds = {r["round"]: r for r in store.query(
        "SELECT round, test_accuracy, epsilon, model_epsilon FROM rounds WHERE run_id = ?", run_id)}

    def utility(server_round: int) -> list[str]:
        r = rounds.get(server_round, {})
        return [_fmt(r.get("test_accuracy"), ".1%"), _fmt(r.get("epsilon"), ".3g"), _fmt(r.get("model_epsilon"), ".3g")]

    queried = {r["round"] for r in store.query(
        "SELECT DISTINCT round FROM updates WHERE run_id = ? AND random_query", run_id)}

    def label(server_round: int) -> str:  # the global model did not move in a random-query round
        return f"{server_round} query" if server_round in queried else str(server_round)

    table = Table(title=f"run {run_id}", caption="query: a malicious random-parameter round" if queried else None)
    for column in ("round", "test acc", "ε", "ε model", "attack", "ok/total", "PSNR dB", "SSIM", "MSE",
                   "label acc", "label counts", "MSE<1e-3", "SSIM>0.4", "s/attack"):
        table.add_column(column, justify="right")
    rows = store.query(_ATTACK_SUMMARY, run_id)
    for row in rows:
        table.add_row(
            label(row["round"]), *utility(row["round"]), row["attack"],
            f"{row['ok']}/{row['attacks']}", _fmt(row["psnr"], ".2f"), _fmt(row["ssim"], ".3f"),
            _fmt(row["mse"], ".2e"), _fmt(row["label_accuracy"], ".0%"), _fmt(row["label_count_accuracy"], ".0%"),
            _fmt(row["success_rate"], ".0%"), _fmt(row["ssim_success_rate"], ".0%"), _fmt(row["seconds"], ".1f"),
        )
    attacked = {row["round"] for row in rows}
    for server_round in sorted(set(rounds) - attacked - {0}):
        table.add_row(label(server_round), *utility(server_round), *["–"] * 10)
    return table
