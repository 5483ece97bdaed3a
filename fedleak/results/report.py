"""``fedleak report``: one self-contained HTML file comparing runs (or one run).

Every plot is drawn by matplotlib (Agg, no display) and, like the stored image grids,
inlined as a base64 PNG: the file opens from disk, fetches nothing and has no script.
Sections: the verdict and the per-arm summary; leakage per round per arm (mean PSNR
beside the mean-image reference, and the worst leakage score); test accuracy per
round; privacy against utility (final accuracy against worst leakage, ε in the labels);
image grids (each arm's stored grid for the same client and round: the truth above the
reconstruction); the per-round table.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from fedleak.core.errors import FedleakError
from fedleak.results.compare import Comparison, RunRecord
from fedleak.results.store import write_private
from fedleak.results.tables import attacks_done, fmt, summary_cells

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_GRID_KEYS = 3
"""At most this many (round, client) image grids per report."""
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.banner { padding: 0.6em 1em; border-radius: 4px; background: #eef6ee; }
.banner.unpaired { background: #fff3cd; } img.plot { max-width: 100%; }
img.grid { image-rendering: pixelated; height: 90px; } .caption { color: #555; font-size: 0.85em; }
"""


def write_report(comparison: Comparison, path: Path) -> Path:
    """Write the report of ``comparison`` to ``path`` (private to its owner); returns the path.

    Raises:
        FedleakError: ``path`` cannot be written.
    """
    document = render(comparison)
    try:
        write_private(path, document)
    except OSError as error:
        raise FedleakError(f"-o {path}: cannot write: {error.strerror or error}") from None
    return path


def render(comparison: Comparison) -> str:
    """The whole HTML document."""
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is written, not shown
    names = ", ".join(html.escape(run.label) for run in comparison.runs)
    sections = [
        f"<h1>fedleak report: {len(comparison.runs)} arm{'s' * (len(comparison.runs) != 1)}</h1>",
        f"<p class='caption'>{names} · written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>",
        _banner(comparison), "<h2>Per arm</h2>", _summary_table(comparison),
        "<h2>Leakage per round</h2>", _plot(_leakage_figure(comparison)),
        "<p class='caption'>Top: mean PSNR of the matched reconstructions; dashed: the mean-image guess on the "
        "same images (recovering nothing scores about that). Bottom: the worst update's leakage score, "
        "(SSIM − mean-image SSIM) / mean-image SSIM; 0 is no better than the guess.</p>",
        "<h2>Test accuracy per round</h2>", _plot(_accuracy_figure(comparison)),
        "<h2>Privacy against utility</h2>", _plot(_tradeoff_figure(comparison)),
        "<h2>Reconstructions</h2>", _image_grids(comparison),
        "<h2>Per round</h2>",
        f"<details><summary>every round × arm × attack ({len(comparison.rows)} rows)</summary>"
        f"{_round_table(comparison)}</details>",
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>fedleak report</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>")


def _banner(comparison: Comparison) -> str:
    if not comparison.paired:
        return (f"<p class='banner unpaired'><b>Unpaired</b>: {html.escape(comparison.unpaired_reason or '')}. "
                "The arms did not train on the same clients, batches and initial model.</p>")
    defending = [s.arm for s in comparison.summary if s.defends]
    verdict = (f"Defend (no image recovered by any attack in any round): {html.escape(', '.join(defending))}; "
               f"at the smallest utility cost: <b>{html.escape(comparison.best_defending or '')}</b>."
               if defending else "No arm defends: in every attacked arm some attack recovered an image.")
    return f"<p class='banner'>Paired: the same clients, batches and initial model in every arm. {verdict}</p>"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='num'>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_table(comparison: Comparison) -> str:
    return _table(["arm", "status", "final acc", "cost", "ε", "ε model", "worst leakage", "best PSNR dB",
                   "recovered", "defends"], (summary_cells(s) for s in comparison.summary))


def _round_table(comparison: Comparison) -> str:
    rows = [[str(r["round"]), r["arm"], fmt(r["test_accuracy"], ".1%"), fmt(r["epsilon"], ".3g"),
             r.get("attack") or "–", *(["–"] * 5 if r.get("attack") is None else [
                 attacks_done(r, "attacked"), fmt(r["success_rate"], ".0%"), fmt(r["psnr"], ".1f"),
                 fmt(r["prior_psnr"], ".1f"), fmt(r["leakage"], ".2f")])] for r in comparison.rows]
    return _table(["round", "arm", "test acc", "ε", "attack", "ok/total", "MSE<1e-3", "PSNR dB", "mean img dB",
                   "leakage"], rows)


def _plot(figure: Figure) -> str:
    """The figure as an inline PNG."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return f"<img class='plot' alt='plot' src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"


def _leakage_figure(comparison: Comparison) -> Figure:
    import matplotlib.pyplot as plt

    attacks = sorted({a["attack"] for run in comparison.runs for a in run.attacks}) or ["(none)"]
    figure, axes = plt.subplots(2, len(attacks), figsize=(4.2 * len(attacks) + 1, 6), squeeze=False, sharex=True)
    for column, attack in enumerate(attacks):
        psnr, leakage = axes[0][column], axes[1][column]
        for run in comparison.runs:
            points = [a for a in run.attacks if a["attack"] == attack and a["ok"]]
            rounds = [a["round"] for a in points]
            psnr.plot(rounds, [a["psnr"] for a in points], marker="o", label=run.label)
            leakage.plot(rounds, [a["worst_leakage"] for a in points], marker="o", label=run.label)
        reference = _reference_line(comparison.runs, attack)
        if reference:
            psnr.plot(*zip(*reference), linestyle="--", marker="x", color="grey", label="mean image")
        leakage.axhline(0.0, linestyle="--", color="grey")
        psnr.set_title(attack)
        psnr.set_ylabel("mean PSNR (dB)")
        leakage.set_ylabel("worst leakage score")
        leakage.set_xlabel("round")
    _round_axis(axes[1][0], sorted({a["round"] for run in comparison.runs for a in run.attacks}))
    axes[0][-1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


def _round_axis(axis: Axes, rounds: list[int]) -> None:
    """Integer round ticks; a single round centred (matplotlib would pad it with fractions)."""
    from matplotlib.ticker import MaxNLocator

    if not rounds:
        return
    axis.set_xlim(min(rounds) - 0.5, max(rounds) + 0.5)
    if len(rounds) <= 12:
        axis.set_xticks(rounds)
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _reference_line(runs: list[RunRecord], attack: str) -> list[tuple[int, float]]:
    """The mean-image PSNR per round, averaged over the arms (equal in paired arms)."""
    by_round: dict[int, list[float]] = {}
    for run in runs:
        for a in run.attacks:
            if a["attack"] == attack and a["prior_psnr"] is not None:
                by_round.setdefault(a["round"], []).append(a["prior_psnr"])
    return [(r, sum(v) / len(v)) for r, v in sorted(by_round.items())]


def _accuracy_figure(comparison: Comparison) -> Figure:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    for run in comparison.runs:
        axis.plot([r["round"] for r in run.rounds], [r["test_accuracy"] for r in run.rounds], marker=".",
                  label=run.label)
    axis.set_xlabel("round")
    _round_axis(axis, sorted({r["round"] for run in comparison.runs for r in run.rounds}))
    axis.set_ylabel("test accuracy")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return figure


def _tradeoff_figure(comparison: Comparison) -> Figure:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    plotted = [(s, s.worst_leakage, s.final_accuracy) for s in comparison.summary]
    placed = [(s, x, y) for s, x, y in plotted if x is not None and y is not None]
    for index, (s, leakage, accuracy) in enumerate(placed):
        axis.scatter([leakage], [accuracy])
        epsilon = "no ε" if s.epsilon is None else f"ε = {s.epsilon:.3g}"
        # Labels of nearby points step up and down, so that equal points stay readable.
        axis.annotate(f"{s.arm} ({epsilon})", (leakage, accuracy), fontsize="small",
                      xytext=(5, 10 * (index % 3) - 10), textcoords="offset points")
    axis.axvline(0.0, linestyle="--", color="grey")
    axis.set_xlabel("worst leakage score (0: no better than the mean image)")
    axis.set_ylabel("final test accuracy")
    return figure


def _image_grids(comparison: Comparison) -> str:
    """For up to a few (round, client) pairs every arm attacked: each arm's grid per attack."""
    keys = [{(i["round"], i["partition_id"]) for i in run.images} for run in comparison.runs]
    common = sorted(set.intersection(*keys)) if keys else []
    if not common:
        return "<p>No stored image grid for a client and round that every arm attacked.</p>"
    attacks = sorted({i["attack"] for run in comparison.runs for i in run.images})
    parts = []
    for server_round, partition in common[:_GRID_KEYS]:
        rows = []
        for run in comparison.runs:
            cells = [_grid_cell(run, server_round, partition, attack) for attack in attacks]
            rows.append(f"<tr><th>{html.escape(run.label)}</th>{''.join(cells)}</tr>")
        header = "".join(f"<th>{html.escape(a)}</th>" for a in attacks)
        parts.append(f"<h3>round {server_round}, client {partition}</h3>"
                     f"<table><tr><th>arm</th>{header}</tr>{''.join(rows)}</table>")
    return ("<p class='caption'>In each grid the top row is the client's real images, the bottom row what the "
            "server reconstructed (matched to them).</p>" + "".join(parts))


def _grid_cell(run: RunRecord, server_round: int, partition: int, attack: str) -> str:
    found = next((i for i in run.images if (i["round"], i["partition_id"], i["attack"]) ==
                  (server_round, partition, attack)), None)
    if found is None:
        return "<td>–</td>"
    try:
        data = base64.b64encode((run.path / found["image"]).read_bytes()).decode()
    except OSError:
        return "<td>image missing</td>"
    caption = fmt(found["psnr"], ".1f") + " dB"
    return (f"<td><img class='grid' alt='{html.escape(attack)}' src='data:image/png;base64,{data}'>"
            f"<div class='caption'>{caption}</div></td>")
