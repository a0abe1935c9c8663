"""The worker's state in one SQLite file (<state>/state.sqlite3): what was pushed, what the current model was trained
on, and polling cursors. Every write is one transaction, so a worker killed at any point restarts from a consistent
state."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from connectors.base import Asset

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pushed (
    asset_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (asset_id, model_version, text_hash)
);
CREATE TABLE IF NOT EXISTS trained_on (
    model_version TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (model_version, asset_id)
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def label_digest(asset: Asset) -> str:
    """Changes when the asset's human labels or its text change."""
    payload = json.dumps([asset.text_hash, sorted(asset.labels or ())])
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class StateStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    # ---- the ledger of pushed pre-annotations -------------------------------------------------------------
    def pushed_keys(self, model_version: str) -> set[tuple[str, str]]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT asset_id, text_hash FROM pushed WHERE model_version = ?", (model_version,))
            return {(a, t) for a, t in rows}

    def record_pushed(self, model_version: str, items: Iterable[tuple[str, str]]) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR IGNORE INTO pushed (asset_id, model_version, text_hash, pushed_at) VALUES (?, ?, ?, ?)",
                [(a, model_version, t, now) for a, t in items],
            )

    def count_pushed(self, model_version: str | None = None) -> int:
        with closing(self._connect()) as db:
            if model_version is None:
                return db.execute("SELECT COUNT(*) FROM pushed").fetchone()[0]
            return db.execute("SELECT COUNT(*) FROM pushed WHERE model_version = ?", (model_version,)).fetchone()[0]

    # ---- what a model was trained on ----------------------------------------------------------------------
    def record_training_set(self, model_version: str, labelled: Sequence[Asset]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR REPLACE INTO trained_on (model_version, asset_id, digest) VALUES (?, ?, ?)",
                [(model_version, a.id, label_digest(a)) for a in labelled],
            )

    def knows_training_set(self, model_version: str) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM trained_on WHERE model_version = ? LIMIT 1",
                              (model_version,)).fetchone() is not None

    def label_changes(self, model_version: str, labelled: Sequence[Asset]) -> int:
        """Labelled assets added, changed or gone since `model_version` was trained (all of them if this store
        never saw that version trained)."""
        with closing(self._connect()) as db:
            before = dict(db.execute("SELECT asset_id, digest FROM trained_on WHERE model_version = ?",
                                     (model_version,)))
        now = {a.id: label_digest(a) for a in labelled}
        changed = sum(1 for asset_id, digest in now.items() if before.get(asset_id) != digest)
        return changed + sum(1 for asset_id in before if asset_id not in now)

    # ---- cursors --------------------------------------------------------------------------------------------
    def cursor(self, name: str) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
            return row[0] if row else None

    def set_cursor(self, name: str, value: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)", (name, value))
