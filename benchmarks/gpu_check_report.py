"""The GPU check's machine line and its report (benchmarks/gpu_check.sh calls both).

    python benchmarks/gpu_check_report.py env --device cuda --tiny 0   # one JSON line: the machine
    python benchmarks/gpu_check_report.py report OUT                    # OUT/gpu_check.json and .md

The report reads what the stages left under OUT (stages.jsonl, a.xml, b.jsonl, c.jsonl,
d.jsonl) and puts each figure beside its target: met, missed, or not measured (a stage
that failed, timed out or had no time left says so; nothing is filled in).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from importlib import metadata
from pathlib import Path
from typing import Any

ATTACKS = ("dlg", "inverting")
"""The attacks stage b measures; a target of one that has no row is "not measured", never left out."""
TARGETS = {
    "speedup_64": 10.0, "speedup_256": 30.0, "gpu_util_256": 50.0, "round_ratio": 1.05,
}
"""Issue 34's targets: batched ≥ 10× one by one at 64 concurrent attacks and ≥ 30× at 256, GPU
utilisation ≥ 50 % at 256, capture + dispatch within 5 % of plain FedAvg's round time."""


def environment(device: str, tiny: bool) -> dict[str, Any]:
    """What the check ran on: the GPU and driver, Python and the packages the stages use."""
    import torch

    versions = {}
    for name in ("torch", "torchvision", "numpy", "flwr", "ray", "pydantic", "opacus", "protobuf", "grpcio"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    smi = None
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True).stdout.strip()
    return {"stage": "env", "status": "ok", "device": device, "tiny": tiny, "gpu": gpu, "nvidia_smi": smi,
            "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "machine": platform.processor() or platform.machine(), "versions": versions}


def _lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` (none if it is missing); a line cut short by a killed process is skipped."""
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"{path.name}: an unreadable line skipped", file=sys.stderr)
    return rows


def tests(path: Path) -> dict[str, Any] | None:
    """The JUnit report's counts and each failing test's first line; ``None`` if there is no readable report."""
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failing = []
    for case in suite.iter("testcase"):
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if problem is not None:
            message = (problem.get("message") or "").splitlines()
            failing.append(f"{case.get('classname')}::{case.get('name')}: {message[0] if message else ''}")
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
            "failing": failing}


def verdict(value: float | None, target: float, at_most: bool = False) -> str:
    """``met`` or ``missed`` against ``target`` (a floor, or a ceiling with ``at_most``); ``not measured``."""
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "missed"


def throughput_row(rows: list[dict[str, Any]], attack: str, count: int) -> dict[str, Any] | None:
    """Stage b's row for ``attack`` at ``count`` concurrent attacks, if it was measured without errors
    (an attack that failed fast would otherwise read as a high rate)."""
    row = next((r for r in rows if r["attack"] == attack and r["concurrent"] == count), None)
    if row is None or row["batched"]["errors"] or row["one_by_one"]["errors"]:
        return None
    return row


def utilisation(rows: list[dict[str, Any]], count: int) -> float | None:
    """The lowest mean GPU utilisation over every attack at ``count``; ``None`` unless each was sampled."""
    found = [throughput_row(rows, attack, count) for attack in ATTACKS]
    samples = [row["batched"].get("gpu") for row in found if row is not None]
    if len(samples) < len(ATTACKS) or not all(samples):
        return None
    return min(sample["gpu_util_mean"] for sample in samples)


def targets(throughput: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> dict[str, str]:
    """Every target of the check beside its verdict; a figure not measured (or measured with errors) says so."""
    def speedup(attack: str, count: int) -> float | None:
        row = throughput_row(throughput, attack, count)
        return None if row is None else row["speedup"]

    ratio = rounds[-1]["ratios"].get("dispatch") if rounds else None
    return {
        **{f"{a} batched/one-by-one at 64 ≥ 10×": verdict(speedup(a, 64), TARGETS["speedup_64"]) for a in ATTACKS},
        **{f"{a} batched/one-by-one at 256 ≥ 30×": verdict(speedup(a, 256), TARGETS["speedup_256"]) for a in ATTACKS},
        "GPU utilisation at 256 ≥ 50 % (lowest attack's mean)": verdict(utilisation(throughput, 256),
                                                                        TARGETS["gpu_util_256"]),
        "capture + dispatch round ≤ 1.05× plain FedAvg": verdict(ratio, TARGETS["round_ratio"], at_most=True),
    }


def summarise(out: Path) -> dict[str, Any]:
    """Everything the stages left under ``out``, with the targets judged."""
    throughput = [row for row in _lines(out / "b.jsonl") if row.get("part") == "attacks"]
    rounds = [row for row in _lines(out / "c.jsonl") if row.get("part") == "round"]
    return {"stages": _lines(out / "stages.jsonl"), "tests": tests(out / "a.xml"), "throughput": throughput,
            "round": rounds, "paper_sizes": _lines(out / "d.jsonl"), "targets": targets(throughput, rounds)}


def markdown(summary: dict[str, Any]) -> str:
    """The report: the machine, each stage's outcome, each stage's figures, the targets."""
    env = next((s for s in summary["stages"] if s["stage"] == "env"), {})
    lines = ["# GPU check", "",
             f"Device `{env.get('device')}`{' (--tiny)' if env.get('tiny') else ''}: GPU {env.get('gpu') or 'none'}"
             f" ({env.get('nvidia_smi') or 'no nvidia-smi'}), {env.get('cpus')} CPUs, Python {env.get('python')}, "
             + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()), "",
             "| stage | status | seconds | limit s |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['stage']} | {s['status']}{' — ' + s['reason'] if s.get('reason') else ''} | "
              f"{s.get('seconds', '–')} | {s.get('limit_s', '–')} |" for s in summary["stages"] if s["stage"] != "env"]
    tested = summary["tests"]
    lines += ["", "## a. Tests with the attacks on the device", ""]
    lines += ([f"{tested['passed']} passed, {tested['failures']} failed, {tested['errors']} errors, "
               f"{tested['skipped']} skipped"] + [f"- {f}" for f in tested["failing"]]) if tested else ["not run"]
    lines += _throughput_table(summary["throughput"]) + _round_table(summary["round"]) + _paper_tables(summary)
    lines += ["", "## Targets", "", "| target | verdict |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in summary["targets"].items()]
    return "\n".join(lines) + "\n"


def _throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    """Stage b: attacks per second batched and one by one, success, speedup, GPU use."""
    lines = ["", "## b. Attack throughput, batched against one by one", ""]
    if not rows:
        return lines + ["not measured"]
    lines += ["| attack | concurrent | batched /s | success | one by one /s | success | speedup "
              "| GPU util mean / max % | GPU memory MiB (nvidia-smi max / torch peak) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b, a, gpu = r["batched"], r["one_by_one"], r["batched"].get("gpu") or {}
        sample = f" (first {a['attacks']})" if r["one_by_one_sampled"] else ""
        util = f"{gpu['gpu_util_mean']:.0f} / {gpu['gpu_util_max']:.0f}" if gpu else "–"
        memory = f"{gpu.get('gpu_mem_max_mib', float('nan')):.0f} / {b.get('torch_peak_mib') or 0:.0f}" if gpu else "–"
        lines.append(f"| {r['attack']} | {r['concurrent']} | {b['per_second']:.2f} | {b['success']:.0%} | "
                     f"{a['per_second']:.2f}{sample} | {a['success']:.0%} | {r['speedup']:.1f}× | {util} | {memory} |")
    return lines


def _round_table(rows: list[dict[str, Any]]) -> list[str]:
    """Stage c: each arm's round time and its ratio to plain FedAvg (the last row: every repeat done so far)."""
    lines = ["", "## c. Round time with 2 attack workers", ""]
    if not rows:
        return lines + ["not measured"]
    row = rows[-1]
    training = (f"FedAvg, {row['local_steps']} local steps" if row["local_steps"] else "FedSGD") + \
        f" of batch {row['batch_size']}"
    lines += [f"{row['clients']} clients, {training}, {row['workers']} Ray attack workers; the run's Ray had "
              f"{max(row['ray_gpus'].values(), default=0):g} GPU(s) for them to share; "
              f"{row['repeats_done']} of {row['repeats_planned']} repeats", "",
              "| arm | median round s | mean round s | ratio to plain FedAvg | aggregate_train median ms |",
              "| --- | --- | --- | --- | --- |"]
    for arm, median in row["medians"].items():
        lines.append(f"| {arm} | {median:.3f} | {row['means'][arm]:.3f} | {row['ratios'][arm]:.3f} | "
                     f"{1000 * row['aggregate_train_medians'][arm]:.1f} |")
    return lines


def _paper_tables(summary: dict[str, Any]) -> list[str]:
    """Stage d: one line per paper-size attack, each with how far it got."""
    rows = summary["paper_sizes"]
    lines = ["", "## d. Paper sizes", ""]
    inverting = [r for r in rows if r.get("part") == "resnet_inverting"]
    kkt = [r for r in rows if r.get("part") == "kkt"]
    grnn = [r for r in rows if r.get("attack") == "grnn"]
    for r in inverting:
        lines.append(f"- Inverting Gradients, ResNet-18 (CIFAR stem), batch {r['batch']}: PSNR {r['psnr']:.2f} dB, "
                     f"SSIM {r['ssim']:.3f} (mean image: {r['mean_image_psnr']:.2f} dB, {r['mean_image_ssim']:.3f}); "
                     f"{r['iterations']} of {r['iterations_planned']} iterations in {r['seconds']:.0f} s "
                     f"({r['stacked']} attacks stacked)")
    for r in kkt:
        steps, planned = r["extras"]["iterations"], r["extras"]["iterations_planned"]
        schedule_min = planned / max(r["attack_iterations_per_s"], 1e-9) / 60
        lines.append(f"- KKT, n {r['n']}, MLP {'-'.join(map(str, r['widths']))}, on {r['device']}: "
                     f"{r['attack_iterations_per_s']} steps/s ({steps} of {planned} steps in {r['attack_seconds']} s; "
                     f"the whole schedule would take {schedule_min:.0f} min), the model trained "
                     f"{r['train_epochs']} epochs to loss {r['train_loss']:.2g}"
                     + (f"; paper count SSIM > 0.4: {r['paper_ssim_over_0.4']} of {r['n']}" if steps == planned
                        else "; no reconstruction count: the schedule was cut"))
    for r in grnn:
        lines.append(f"- GRNN, LeNet/MNIST, batch {r['batch']}: {r['recovered']} of {r['batch']} recovered "
                     f"(MSE < 1e-3), PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, {r['iterations']} iterations in "
                     f"{r['seconds']:.0f} s{' (time budget hit)' if r['stopped_by_budget'] else ''}")
    return lines if len(lines) > 3 else lines + ["not measured"]


def main() -> None:
    """``env``: print the machine line; ``report OUT``: write OUT/gpu_check.json and OUT/gpu_check.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    env = parts.add_parser("env")
    env.add_argument("--device", required=True)
    env.add_argument("--tiny", type=int, default=0)
    report = parts.add_parser("report")
    report.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.part == "env":
        print(json.dumps(environment(args.device, bool(args.tiny))))
        return
    summary = summarise(args.out)
    report = markdown(summary)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    (args.out / "gpu_check.md").write_text(report)
    print(report)
    failed = [s["stage"] for s in summary["stages"] if s["status"] != "ok"]
    print(f"stages not ok: {', '.join(failed)}" if failed else "every stage ok", file=sys.stderr)


if __name__ == "__main__":
    main()
