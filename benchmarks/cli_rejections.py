"""How fast and how cleanly the CLI rejects bad input: every case as its own process.

Each case runs ``fedleak …`` in a fresh process and reports the exit code, the number
of output lines, the wall time from process start to exit and the CPU time (the issue's
target: exit code 2, one line, within 5 s). Nothing here needs a network or Ray.

    python benchmarks/cli_rejections.py [--repeats 3] [--data-root ../shared/data/mnist]

Measured, not asserted: a Markdown table, one row per case, with the median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sqlite3
import statistics
import tempfile
from pathlib import Path

from process_timing import timed

from mnist_setup import machine

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = str(ROOT / "scenarios" / "quickstart.toml")


def _files(work: Path, data_root: Path) -> None:
    """The bad files the cases read: undecodable TOML, corrupt MNIST, not-a-database, a plain file."""
    (work / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    (work / "file").write_text("")
    for name, content in {"cut": None, "junk": b"garbage"}.items():
        folder = work / f"mnist-{name}"
        folder.mkdir()
        images = (data_root / "t10k-images-idx3-ubyte.gz").read_bytes()
        (folder / "t10k-images-idx3-ubyte.gz").write_bytes(content or images[:5000])
        shutil.copy(data_root / "t10k-labels-idx1-ubyte.gz", folder)
    raw = work / "mnist-header"
    raw.mkdir()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + b"\x00" * 12 + b"x"))
    shutil.copy(data_root / "t10k-labels-idx1-ubyte.gz", raw)
    for name, content in {"empty": b"", "junk": b"not a database at all"}.items():
        (work / f"run-{name}").mkdir()
        (work / f"run-{name}" / "results.sqlite").write_bytes(content)
    (work / "run-other").mkdir()
    other = sqlite3.connect(work / "run-other" / "results.sqlite")
    other.execute("CREATE TABLE notes (text TEXT)")
    other.commit()
    other.close()


def cases(work: Path) -> list[tuple[str, list[str]]]:
    sets = lambda *pairs: [part for pair in pairs for part in ("--set", pair)]  # noqa: E731
    run = ["run", QUICKSTART]
    return [
        ("non-UTF-8 scenario", ["run", str(work / "latin1.toml")]),
        ("--set name.x=1", [*run, *sets("name.x=1")]),
        ("--set seed.x.y=1", [*run, *sets("seed.x.y=1")]),
        ("model name as a table", [*run, *sets("model.name={a=1}")]),
        ("seed=-1", [*run, *sets("seed=-1")]),
        ("time_budget_s=inf", [*run, *sets("attacks.0.time_budget_s=inf")]),
        ("mlp widths=[0]", [*run, *sets("model.name=mlp", "model.widths=[0]")]),
        ("convnet channels=[0]", [*run, *sets("model.name=convnet", "model.channels=[0]")]),
        ("lr=1e300", [*run, *sets("training.lr=1e300")]),
        ("lr=inf", [*run, *sets("training.lr=inf")]),
        ("rounds=1e20", [*run, *sets("federation.rounds=1e20")]),
        ("dirichlet alpha=inf, min size 0", [*run, *sets("partition.name=dirichlet", "partition.alpha=inf",
                                                        "partition.min_partition_size=0")]),
        ("dirichlet unreachable min size", [*run, *sets("partition.num_clients=1500", "partition.name=dirichlet",
                                                       "partition.min_partition_size=1")]),
        ("model too large for the data", [*run, *sets("model.channels=65536")]),
        ("MNIST .gz cut short", [*run, *sets("dataset.name=mnist", f"dataset.data_root='{work / 'mnist-cut'}'")]),
        ("MNIST not gzip", [*run, *sets("dataset.name=mnist", f"dataset.data_root='{work / 'mnist-junk'}'")]),
        ("MNIST idx header lies", [*run, *sets("dataset.name=mnist", f"dataset.data_root='{work / 'mnist-header'}'")]),
        ("--out is a file", [*run, "--out", str(work / "file")]),
        ("--out below a file", [*run, "--out", str(work / "file" / "runs")]),
        ("results: empty database file", ["results", str(work / "run-empty")]),
        ("results: not a database", ["results", str(work / "run-junk")]),
        ("results: another program's database", ["results", str(work / "run-other")]),
        ("results: no run directory", ["results", str(work / "nowhere")]),
    ]


def measure(argv: list[str]) -> tuple[int, int, float, float, str]:
    """Exit code, output lines, wall and CPU seconds, the last line (stdout and stderr together)."""
    done = timed(["fedleak", *argv], timeout_s=120)
    lines = [line for _, line in done.lines if line.strip()]
    return done.returncode, len(lines), done.wall_s, done.cpu_s, (lines[-1] if lines else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    args = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        _files(work, args.data_root)
        print("| case | exit code | output lines | median s | max s | median CPU s | message |")
        print("|---|---|---|---|---|---|---|")
        for name, argv in cases(work):
            runs = [measure(argv) for _ in range(args.repeats)]
            codes, lines = {r[0] for r in runs}, {r[1] for r in runs}
            times, cpu = [r[2] for r in runs], [r[3] for r in runs]
            message = runs[-1][4].replace("|", "\\|").replace(str(work), "…")[:110]
            print(f"| {name} | {'/'.join(map(str, sorted(codes)))} | {'/'.join(map(str, sorted(lines)))} "
                  f"| {statistics.median(times):.2f} | {max(times):.2f} | {statistics.median(cpu):.2f} | {message} |",
                  flush=True)


if __name__ == "__main__":
    main()
