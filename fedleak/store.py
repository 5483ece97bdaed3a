"""The results store: one SQLite database (WAL) plus PNG grids in a run directory.

Every write commits at once, so a crash later in a run loses nothing already stored.
Layout of a run directory::

    results.sqlite      runs, rounds (utility, ε), updates (ε), attack_results (ε)
    scenario.toml       the resolved scenario (re-runnable with ``fedleak run``)
    images/             r{round}-p{partition}-{attack}.png: truth row above reconstruction row
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import save_image

from fedleak.errors import FedleakError
from fedleak.evaluation import AttackResult
from fedleak.privacy import NO_EPSILON, Epsilon
from fedleak.updates import ClientUpdate

DATABASE = "results.sqlite"

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
"""

_ADDED_COLUMNS = {
    "runs": {"risk_index": "REAL", "audit": "TEXT"},
    "attack_results": {"label_count_accuracy": "REAL", "random_query": "INTEGER", "ssim_success_rate": "REAL"},
    "updates": {"random_query": "INTEGER"},
}
"""Columns newer than the first schema, added to every database (new or written before them) when opened."""

_METRICS = ("mse", "psnr", "ssim", "label_accuracy", "label_count_accuracy", "success_rate", "ssim_success_rate")


class ResultStore:
    """Writes and reads one run directory's database. Safe to share across threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        (self.directory / "images").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.directory / DATABASE, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        with self._lock, self._db:
            for table, columns in _ADDED_COLUMNS.items():
                present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
                for name, kind in columns.items():
                    if name not in present:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    @classmethod
    def open_existing(cls, directory: Path) -> ResultStore:
        if not (Path(directory) / DATABASE).is_file():
            raise FedleakError(f"not a run directory (no {DATABASE}): {directory}")
        return cls(directory)

    def _write(self, sql: str, values: tuple[Any, ...] | dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(sql, values)

    def start_run(self, run_id: str, name: str, scenario_toml: str) -> None:
        (self.directory / "scenario.toml").write_text(scenario_toml)
        self._insert("runs", {"run_id": run_id, "name": name, "started": time.time(), "status": "running",
                              "scenario": scenario_toml})

    def record_audit(self, run_id: str, risk_index: float | None, audit: dict[str, Any]) -> None:
        """The model's leakage audit as JSON, and its risk index (``None``: the model is not auditable)."""
        self._write("UPDATE runs SET risk_index = ?, audit = ? WHERE run_id = ?",
                    (risk_index, json.dumps(audit), run_id))

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        self._write("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (time.time(), status, run_id))

    def record_round(self, run_id: str, server_round: int, accuracy: float, loss: float,
                     epsilon: Epsilon = NO_EPSILON) -> None:
        """The global model after ``server_round``: utility, and the worst client's ε so far."""
        self._write("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, server_round, accuracy, loss, time.time(), epsilon.update, epsilon.model))

    def record_update(self, update: ClientUpdate, epsilon: Epsilon = NO_EPSILON) -> None:
        aggregate_of = json.dumps(list(update.aggregate_of)) if update.aggregate_of else None
        row = {
            "run_id": update.run_id, "round": update.server_round, "node_id": str(update.node_id),
            "partition_id": update.partition_id, **asdict(update.metadata), "update_norm": update.norm(),
            "aggregate_of": aggregate_of, "epsilon": epsilon.update, "model_epsilon": epsilon.model,
            "random_query": update.random_query,
        }
        self._insert("updates", row)

    def record_attack(self, result: AttackResult, image: str | None = None) -> None:
        row = asdict(result)
        metrics = row.pop("metrics")
        row.update({k: metrics.get(k) for k in _METRICS})
        row.update({k: json.dumps(row[k]) for k in ("threat", "defenses", "extras")})
        row["image"] = image
        row["round"] = row.pop("server_round")
        row["node_id"] = str(row["node_id"])  # Flower node ids are 64-bit unsigned
        self._insert("attack_results", row)

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        """Insert by column name (tables gain columns over time, so never by position)."""
        columns = ", ".join(row)
        self._write(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in row)})", row)

    def save_grid(self, name: str, truth: torch.Tensor, recon: torch.Tensor) -> str:
        """Save ground truth (top row) above the matched reconstructions; returns the relative path."""
        path = Path("images") / f"{name}.png"
        columns = max(len(truth), len(recon))
        pad = lambda x: torch.cat([x, torch.zeros(columns - len(x), *x.shape[1:])])  # noqa: E731
        grid = torch.cat([pad(truth), pad(recon)])
        scale = max(1, 32 // grid.shape[-1])  # blow tiny images (8×8 digits) up to be seen
        grid = torch.nn.functional.interpolate(grid, scale_factor=scale, mode="nearest")
        save_image(grid, self.directory / path, nrow=columns, padding=1)
        return str(path)

    def query(self, sql: str, *values: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, values)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
