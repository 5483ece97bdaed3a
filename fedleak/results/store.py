"""The results store: one SQLite database (WAL) plus PNG grids in a run directory.

A write commits at once unless it is inside :meth:`ResultStore.transaction` (the server
stores each round's replies in one), so a crash loses at most the round in progress.
Readers (:meth:`ResultStore.open_existing`) open the database read-only and create nothing.
Layout of a run directory (0700; every file in it 0600, whatever the umask)::

    results.sqlite      runs (status, error, data-plan digest), rounds (utility, ε), updates
                        (accepted, rejected or failed replies; ε; batch digest; an attached
                        app's warnings; a lab update's sanity check), attack_results (status,
                        scores and the mean-image reference, ε, time), crafted_weights (a malicious
                        round's weights as a client sees them, per tensor)
    scenario.toml       the resolved scenario (re-runnable with ``fedleak run``)
    checkpoint.safetensors  the global model after the last completed round (:mod:`.checkpoint`)
    captures/           round-{r}.safetensors: the round's captured updates (:mod:`.captures`)
    images/             r{round}-p{partition}-{attack}.png: truth row above reconstruction row
    .lock               held by the process writing the run (:mod:`.lock`)
"""

from __future__ import annotations

import json
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fedleak.core.digests import record_digest
from fedleak.core.errors import FedleakError
from fedleak.core.updates import ClientUpdate
from fedleak.results.rows import (
    AttackResult,
    AttackStatus,
    Epsilon,
    LayerVisibility,
    RejectedReply,
    ReplyStatus,
    RunStatus,
)

if TYPE_CHECKING:  # reading a run needs neither torch, the scoring nor the accountant (Opacus)
    import torch
    from PIL.Image import Image


DATABASE = "results.sqlite"


def check_out_dir(out_dir: Path) -> None:
    """Whether run directories can be made in ``out_dir`` (created with its parents if
    absent), without making anything: checked before a run's slow start.

    Raises:
        FedleakError: ``out_dir``, or the nearest existing folder above it, is a file or not writable.
    """
    existing = next(path for path in [Path(out_dir), *Path(out_dir).absolute().parents] if path.exists())
    if not existing.is_dir():
        raise FedleakError(f"--out {out_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FedleakError(f"--out {out_dir}: {existing} is not writable")


def new_run_dir(out_dir: Path, name: str) -> Path:
    """Create ``<out>/<name>-<UTC time>-<4 hex>`` (unique, sortable, never reused), private to its owner.

    Raises:
        FedleakError: ``out_dir`` cannot hold a run directory (a file, or not writable).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return make_run_dir(Path(out_dir) / f"{name}-{stamp}-{secrets.token_hex(2)}")


def open_private(path: Path, mode: str = "w") -> IO[Any]:
    """Open ``path`` for writing (created or truncated), readable and writable by its owner
    only: 0600 whatever the umask (``chmod`` after creation, as ``umask`` only clears bits)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    return os.fdopen(descriptor, mode, encoding=None if "b" in mode else "utf-8")


def write_private(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` (0600); bytes are written whole to a temporary file first and
    renamed into place, so a reader or a crash never sees half of them."""
    if isinstance(data, str):
        with open_private(path) as file:
            file.write(data)
        return
    partial = path.with_name(f".{path.name}.partial")
    with open_private(partial, "wb") as file:
        file.write(data)
    partial.replace(path)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if absent; the folder itself is private to its owner (0700)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(0o700)
    except OSError as error:
        raise FedleakError(f"--out {path.parent}: cannot create {path.name} there: {error.strerror or error}") from None


def make_run_dir(run_dir: Path) -> Path:
    """Create the new directory ``run_dir`` (and its parents), private to its owner.

    Raises:
        FedleakError: it exists already, or its parent cannot hold it (a file, not writable).
    """
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(mode=0o700)
        run_dir.chmod(0o700)
    except OSError as error:
        raise FedleakError(f"--out {run_dir.parent}: cannot create a run directory there: "
                           f"{error.strerror or error}") from None
    make_private_dir(run_dir / "images")
    return run_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT, started REAL, finished REAL,
    status TEXT, scenario TEXT);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT, round INTEGER, test_accuracy REAL, test_loss REAL, finished REAL,
    epsilon REAL, model_epsilon REAL, PRIMARY KEY (run_id, round));
CREATE TABLE IF NOT EXISTS updates (
    run_id TEXT, round INTEGER, node_id TEXT, partition_id INTEGER,
    algorithm TEXT, lr REAL, local_steps INTEGER, batch_size INTEGER,
    num_examples INTEGER, update_norm REAL, aggregate_of TEXT, epsilon REAL, model_epsilon REAL);
CREATE TABLE IF NOT EXISTS attack_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, round INTEGER, node_id TEXT,
    partition_id INTEGER, attack TEXT, status TEXT, error TEXT, seconds REAL,
    mse REAL, psnr REAL, ssim REAL, label_accuracy REAL, success_rate REAL,
    num_reconstructed INTEGER, num_ground_truth INTEGER,
    threat TEXT, defenses TEXT, epsilon REAL, model_epsilon REAL, extras TEXT, image TEXT);
CREATE TABLE IF NOT EXISTS crafted_weights (
    run_id TEXT, round INTEGER, node_id TEXT, crafting TEXT, layer TEXT, norm REAL, std REAL, max_abs REAL,
    relative_change REAL, std_over_init REAL);
"""

_ADDED_COLUMNS = {
    "runs": {"risk_index": "REAL", "audit": "TEXT", "error": "TEXT", "data_plan": "TEXT", "plan_digest": "TEXT"},
    "attack_results": {"label_count_accuracy": "REAL", "random_query": "INTEGER", "ssim_success_rate": "REAL",
                       "batch_seconds": "REAL", "batch_size": "INTEGER", "best_psnr": "REAL", "prior_psnr": "REAL",
                       "prior_ssim": "REAL", "leakage": "REAL", "recovered_rate": "REAL",
                       "attack_config": "TEXT", "variant": "TEXT", "reconstruction": "TEXT", "crafted": "TEXT"},
    "updates": {"random_query": "INTEGER", "status": "TEXT", "reason": "TEXT", "batch_digest": "TEXT",
                "warning": "TEXT", "sanity": "TEXT", "crafted": "TEXT"},
}
"""Columns newer than the first schema, added to every database (new or written before them) when opened."""

ATTACK_LABEL = "attack || COALESCE(' [' || variant || ']', '')"
"""SQL: an attack result's label, its offline re-attack's settings after the name (``inverting [iterations=8000]``)."""

_METRICS = ("mse", "psnr", "best_psnr", "ssim", "label_accuracy", "label_count_accuracy", "success_rate",
            "ssim_success_rate", "prior_psnr", "prior_ssim", "leakage", "recovered_rate")


class ResultStore:
    """Writes and reads one run directory's database. Safe to share across threads."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._depth = 0
        """Nesting of :meth:`transaction` (held with ``_lock``): only the outermost commits."""
        path = self.directory / DATABASE
        if not read_only:
            make_private_dir(self.directory / "images")
            if not path.exists():  # SQLite gives its WAL and shared-memory files the database's mode
                open_private(path, "wb").close()
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro" if read_only else path, uri=read_only,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        if read_only:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        with self.transaction():
            for table, columns in _ADDED_COLUMNS.items():
                present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @classmethod
    def open_existing(cls, directory: Path) -> ResultStore:
        """A run directory's results, read-only: nothing is created or changed.

        Raises:
            FedleakError: no database there, or not one fedleak wrote (corrupt, another schema).
        """
        if not (Path(directory) / DATABASE).is_file():
            raise FedleakError(f"not a run directory (no {DATABASE}): {directory}")
        store = cls(directory, read_only=True)
        try:
            tables = {row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as error:
            store.close()
            raise FedleakError(f"{Path(directory) / DATABASE}: cannot be read as a database: {error}") from None
        missing = sorted({"runs", "rounds", "updates", "attack_results"} - tables)
        if missing:
            store.close()
            raise FedleakError(f"{Path(directory) / DATABASE}: not a fedleak results database "
                               f"(no table {', '.join(missing)})")
        return store

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every write inside commits together when the outermost ``transaction`` ends (or
        none, if it raises). Other threads' writes wait for it: keep it short."""
        with self._lock:
            self._depth += 1
            try:
                yield
                if self._depth == 1:
                    self._db.commit()
            except BaseException:
                if self._depth == 1:
                    self._db.rollback()
                raise
            finally:
                self._depth -= 1

    def _write(self, sql: str, values: tuple[Any, ...] | dict[str, Any]) -> None:
        with self.transaction():
            self._db.execute(sql, values)

    def start_run(self, run_id: str, name: str, scenario_toml: str) -> None:
        write_private(self.directory / "scenario.toml", scenario_toml)
        self._insert("runs", {"run_id": run_id, "name": name, "started": time.time(), "status": RunStatus.RUNNING,
                              "scenario": scenario_toml})

    def record_audit(self, run_id: str, risk_index: float | None, audit: dict[str, Any]) -> None:
        """The model's leakage audit as JSON, and its risk index (``None``: the model is not auditable)."""
        self._write("UPDATE runs SET risk_index = ?, audit = ? WHERE run_id = ?",
                    (risk_index, json.dumps(audit), run_id))

    def record_data_plan(self, run_id: str, fingerprint: dict[str, Any]) -> None:
        """What fixes the clients' batches and the initial model (:mod:`fedleak.core.digests`),
        and its digest: runs with equal digests are paired."""
        self._write("UPDATE runs SET data_plan = ?, plan_digest = ? WHERE run_id = ?",
                    (json.dumps(fingerprint, sort_keys=True), record_digest(fingerprint), run_id))

    def finish_run(self, run_id: str, status: RunStatus = RunStatus.FINISHED, error: str | None = None) -> None:
        """End the run ``status`` (finished, failed or interrupted); ``error`` says why it did not finish."""
        self._write("UPDATE runs SET finished = ?, status = ?, error = ? WHERE run_id = ?",
                    (time.time(), status, error, run_id))

    def reopen_run(self, run_id: str, last_round: int) -> None:
        """Make a stopped run ``running`` again from ``last_round``: every row of a later round
        (what the stopped process stored of the round it did not complete) and every
        cancelled attack goes, in one transaction, so the resumed run re-creates each once."""
        with self.transaction():
            for table in ("rounds", "updates", "attack_results"):
                self._db.execute(f"DELETE FROM {table} WHERE run_id = ? AND round > ?", (run_id, last_round))
            self._db.execute("DELETE FROM attack_results WHERE run_id = ? AND status = ?",
                             (run_id, AttackStatus.CANCELLED))
            self._db.execute("UPDATE runs SET status = ?, finished = NULL, error = NULL WHERE run_id = ?",
                             (RunStatus.RUNNING, run_id))

    def discard_attack_results(self, run_id: str, attack: str, variant: str,
                               targets: Iterable[tuple[int, str]]) -> int:
        """Remove the results of ``attack`` labelled ``variant`` on ``targets`` ((round, node id)),
        in one transaction: a re-attack with the same settings replaces them. Returns how many."""
        removed = 0
        with self.transaction():
            for server_round, node_id in targets:
                removed += self._db.execute(
                    "DELETE FROM attack_results WHERE run_id = ? AND round = ? AND node_id = ? AND attack = ? "
                    "AND variant = ?", (run_id, server_round, node_id, attack, variant)).rowcount
        return removed

    def record_round(self, run_id: str, server_round: int, accuracy: float, loss: float,
                     epsilon: Epsilon | None = None) -> None:
        """The global model after ``server_round``: utility, and the worst client's ε so far."""
        self._write("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, server_round, accuracy, loss, time.time(), *_epsilons(epsilon)))

    def record_update(self, update: ClientUpdate, epsilon: Epsilon | None = None,
                      batch_digest: str | None = None, sanity: str | None = None) -> None:
        """An accepted reply, with the ε it cost, the digest of the batches it trained on,
        what it did not declare (an attached app's, ``warning``) and its sanity check's verdict
        (a lab update's, ``sanity``: :mod:`fedleak.adversary.sanity`)."""
        aggregate_of = json.dumps(list(update.aggregate_of)) if update.aggregate_of else None
        row = {
            "run_id": update.run_id, "round": update.server_round, "node_id": str(update.node_id),
            "partition_id": update.partition_id, **asdict(update.metadata), "update_norm": update.norm(),
            "aggregate_of": aggregate_of, **dict(zip(("epsilon", "model_epsilon"), _epsilons(epsilon))),
            "crafted": update.crafted, "status": ReplyStatus.ACCEPTED, "batch_digest": batch_digest,
            "warning": "; ".join(update.warnings) or None, "sanity": sanity,
        }
        self._insert("updates", row)

    def record_rejection(self, reply: RejectedReply) -> None:
        """A reply kept out of aggregation and attacks (its status: rejected or failed), with why."""
        self._insert("updates", {"run_id": reply.run_id, "round": reply.server_round, "node_id": str(reply.node_id),
                                 "partition_id": reply.partition_id, "status": reply.status,
                                 "reason": reply.reason})

    def record_crafted(self, run_id: str, server_round: int, node_id: int | None, crafting: str,
                       layers: Iterable[LayerVisibility]) -> None:
        """What a malicious server sent ``node_id`` (``None``: every client of the round) in
        ``server_round`` instead of the global model, as a client could see it: one row per tensor."""
        with self.transaction():
            for layer in layers:
                self._insert("crafted_weights", {"run_id": run_id, "round": server_round, "crafting": crafting,
                                                 "node_id": None if node_id is None else str(node_id),
                                                 **asdict(layer)})

    def record_attack(self, result: AttackResult, image: str | None = None,
                      reconstruction: str | None = None) -> None:
        """One attack's result; ``image`` and ``reconstruction``: the paths of its grid and of
        everything it returned (:mod:`fedleak.results.reconstructions`), relative to the run directory."""
        row = asdict(result)
        metrics = row.pop("metrics")
        row.update({k: metrics.get(k) for k in _METRICS})
        row.update({k: json.dumps(row[k]) for k in ("threat", "defenses", "extras", "attack_config")})
        row["image"], row["reconstruction"] = image, reconstruction
        row["round"] = row.pop("server_round")
        row["node_id"] = str(row["node_id"])  # Flower node ids are 64-bit unsigned
        self._insert("attack_results", row)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """Insert by column name (tables gain columns over time, so never by position)."""
        columns = ", ".join(row)
        self._write(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})", row)

    def save_grid(self, name: str, truth: torch.Tensor | None, recon: torch.Tensor) -> str:
        """Save ground truth (top row) above the matched reconstructions, or (``truth`` ``None``:
        unscored) the reconstructions alone; returns the relative path."""
        import torch

        path = Path("images") / f"{name}.png"
        columns = max(len(recon), 0 if truth is None else len(truth))
        pad = lambda x: torch.cat([x, torch.zeros(columns - len(x), *x.shape[1:])])  # noqa: E731
        scale = max(1, 32 // recon.shape[-1])  # blow tiny images (8×8 digits) up to be seen
        rows = [torch.nn.functional.interpolate(pad(images), scale_factor=scale, mode="nearest")
                for images in ([recon] if truth is None else [truth, recon])]
        with open_private(self.directory / path, "wb") as file:  # clients' real images: 0600
            _png(_tiled(torch.stack(rows))).save(file, format="png")
        return str(path)

    def query(self, sql: str, *values: Any) -> list[dict[str, Any]]:
        """Rows of any read; the modules of ``fedleak.results`` use it, everything else the named reads below."""
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, values)]

    def runs(self) -> list[dict[str, Any]]:
        """Every run row stored here (one for a run directory): its id and name, status and error, the
        scenario, the model's risk index, when it started and ended (seconds since the epoch; ``finished``
        ``None`` while it runs). Named columns: a database without them is not fedleak's (``sqlite3.Error``,
        which the commands turn into one line)."""
        return self.query("SELECT run_id, name, status, error, scenario, risk_index, started, finished FROM runs")

    def run_row(self) -> dict[str, Any] | None:
        """The run's row; ``None`` before the run was started."""
        rows = self.runs()
        return rows[0] if rows else None

    def rounds(self) -> list[dict[str, Any]]:
        """Every completed round in order: ``round``, ``test_accuracy``, ``test_loss``, ``finished``
        (when it completed, seconds since the epoch), ``epsilon`` and ``model_epsilon``."""
        return self.query("SELECT round, test_accuracy, test_loss, finished, epsilon, model_epsilon FROM rounds "
                          "ORDER BY round")

    def attack_results(self, attack: str | None = None) -> list[dict[str, Any]]:
        """Every stored attack result (of ``attack`` only, when named) in the order stored, every column."""
        if attack is None:
            return self.query("SELECT * FROM attack_results ORDER BY id")
        return self.query("SELECT * FROM attack_results WHERE attack = ? ORDER BY id", attack)

    def crafted_weights(self) -> list[dict[str, Any]]:
        """Every stored row of crafted weights (:meth:`record_crafted`) in the order stored; none in a
        database written before they were stored."""
        if not self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'crafted_weights'"):
            return []
        return self.query("SELECT * FROM crafted_weights ORDER BY rowid")

    def accepted_updates(self) -> int:
        """How many replies were accepted (captured) over the whole run."""
        return int(self.query("SELECT COUNT(*) AS n FROM updates WHERE status = ?", ReplyStatus.ACCEPTED)[0]["n"])

    def stored_round(self, server_round: int) -> tuple[float, float]:
        """A completed round's test accuracy and loss."""
        row = self.query("SELECT test_accuracy, test_loss FROM rounds WHERE round = ?", server_round)[0]
        accuracy, loss = (math.nan if v is None else float(v)  # SQLite stores NaN as NULL
                          for v in (row["test_accuracy"], row["test_loss"]))
        return accuracy, loss

    def accepted_participations(self) -> list[dict[str, Any]]:
        """Every accepted update in the order it was stored: round, node, partition (or the partitions of
        an aggregate), its training (local steps, batch size) and the ε stored with it."""
        return self.query("SELECT round, node_id, partition_id, aggregate_of, local_steps, batch_size, epsilon, "
                          "model_epsilon FROM updates WHERE status = ? ORDER BY round, rowid", ReplyStatus.ACCEPTED)

    def attacked(self) -> set[tuple[int, str, str]]:
        """(round, node id, attack) of every result the run's own attacks stored (re-attacks not counted)."""
        return {(r["round"], r["node_id"], r["attack"])
                for r in self.query("SELECT round, node_id, attack FROM attack_results WHERE variant IS NULL")}

    def close(self) -> None:
        """Close; a writer leaves a plain (rollback-journal) database behind, which a reader
        opens read-only without creating WAL side files next to it."""
        with self._lock:
            if not self.read_only:
                try:
                    self._db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.OperationalError:  # another connection still reads: it stays in WAL mode
                    pass
            self._db.close()


def _epsilons(epsilon: Epsilon | None) -> tuple[float | None, float | None]:
    """(ε against the server, ε of the model); ``None`` where nothing is accounted."""
    return (None, None) if epsilon is None else (epsilon.update, epsilon.model)


def _tiled(rows: torch.Tensor) -> torch.Tensor:
    """``(R, N, C, H, W)`` images in [0, 1] as one ``(C, R(H+1)+1, N(W+1)+1)`` image: a black
    line of one pixel between and around them."""
    import torch

    count, columns, channels, height, width = rows.shape
    grid = torch.zeros(channels, count * (height + 1) + 1, columns * (width + 1) + 1)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            grid[:, 1 + r * (height + 1):(r + 1) * (height + 1), 1 + c * (width + 1):(c + 1) * (width + 1)] = image
    return grid


def _png(image: torch.Tensor) -> Image:
    """A ``(C, H, W)`` image in [0, 1] (C 1 or 3) as a PIL image, rounded to 8 bits. PIL, not
    torchvision: importing torchvision costs the server a second on the first grid of a run."""
    import torch
    from PIL import Image as PIL

    pixels = image.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return PIL.fromarray(pixels[0].numpy() if len(pixels) == 1 else pixels.permute(1, 2, 0).numpy())
