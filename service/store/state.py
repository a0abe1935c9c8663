"""The worker's state in one SQLite file (<state>/state.sqlite3): what was pushed, what the current model was trained
on, the asset cache, and where the pulls stand. Every write is one transaction, so a worker killed at any point
restarts from a consistent state."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from automl.errors import InputError
from connectors.base import Asset, Priority

__all__ = ["CachedTexts", "DiskFull", "EmptyPull", "PullMarks", "Pushed", "Remembered", "StateError", "StateStore",
           "check_state_folder", "disk_full_as_error"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pushed (
    asset_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    priority REAL,            -- how much a human label of it would help, as pushed (NULL: none computed)
    why TEXT,
    prefill TEXT,             -- JSON {facet: [codes]} pre-filled (NULL: pushed by a release that did not keep it)
    PRIMARY KEY (asset_id, model_version, text_hash)
);
CREATE TABLE IF NOT EXISTS claims (      -- pre-annotations being pushed right now: nothing else may make them
    asset_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    PRIMARY KEY (asset_id, model_version)
);
CREATE TABLE IF NOT EXISTS trained_on (
    model_version TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (model_version, asset_id)
);
CREATE TABLE IF NOT EXISTS assets (
    asset_id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    labels TEXT,              -- JSON list of codes; NULL: not labelled by a human yet
    version TEXT NOT NULL,    -- the platform's change marker
    pull INTEGER NOT NULL,    -- the pull that last saw the asset
    label_ref TEXT NOT NULL DEFAULT '',   -- the platform's id of the human label (Kili label, Label Studio annotation)
    reviewed_at TEXT NOT NULL DEFAULT ''  -- when a reviewer made that label ('' : not a review)
);
CREATE INDEX IF NOT EXISTS assets_unlabelled ON assets (asset_id) WHERE labels IS NULL;
CREATE TABLE IF NOT EXISTS label_issues_pushed (   -- likely label mistakes shown on a platform: once per label
    destination TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    digest TEXT NOT NULL,     -- the human label it was about (Asset.label_digest)
    code TEXT NOT NULL,
    kind TEXT NOT NULL,       -- given | missing
    model_version TEXT NOT NULL,
    pushed_at TEXT NOT NULL,
    PRIMARY KEY (destination, asset_id, digest, code, kind)
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class PullMarks:
    """Where the incremental pulls stand, kept between cycles."""

    cursor: str | None = None  # the platform's change marker the next pull starts from
    reached_at: float = 0.0  # when the pull that moved the cursor there started (time.time())
    covered: str | None = None  # a cursor that a pull started `overlap` seconds past has read: pulls start at it
    last_complete: float = 0.0  # when the last complete pull was made (the next is due [worker] full_pull_seconds on)


# Their names in the `cursors` table, as earlier releases wrote them.
_PULL_MARKS = {"cursor": "assets", "reached_at": "assets_reached", "covered": "assets_covered",
               "last_complete": "last_complete_pull"}


@dataclass(frozen=True)
class Pushed:
    """A pre-annotation as the ledger keeps it."""

    asset_id: str
    text_hash: str
    priority: Priority | None = None
    prefill: dict[str, list[str]] | None = None  # codes pre-filled per facet (None: not kept by an earlier release)


def _json_or_none(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _chunks(ids: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """Ids in slices small enough for one `IN (...)` query (SQLite caps the parameters of a statement)."""
    ids = list(ids)
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _cached_text(db: sqlite3.Connection, asset_id: str, version: str) -> str | None:
    rows = db.execute("SELECT text FROM assets WHERE asset_id = ? AND version = ?", (asset_id, version)).fetchall()
    return rows[0][0] if rows else None


class CachedTexts:
    """The asset cache's texts, read through one open connection (see `StateStore.texts`)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def cached_text(self, asset_id: str, version: str) -> str | None:
        return _cached_text(self._db, asset_id, version)


class StateError(InputError):
    """The state folder or its ledger cannot be used; the message says how to fix or rebuild it."""


class DiskFull(StateError):
    """A write found no space left: it was abandoned whole (an atomic rename, a transaction), so what was there
    before is still there."""


def check_state_folder(folder: Path) -> None:
    """The state folder exists (made if it does not) and this user may write in it; else a StateError with the fix."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"state folder {folder}: cannot be made ({exc.strerror}). Fix: set --state or state_dir to"
                         " a folder this user may write (not under a file).") from None
    if not os.access(folder, os.W_OK, effective_ids=True):  # a read-only mount (root too), or another user's folder
        raise StateError(f"state folder {folder}: this user ({os.geteuid()}) cannot write there: the ledger, the"
                         " models and the logs live in it. Fix: mount it read-write, or give it to this user (the"
                         " Docker image runs as uid 10001: `chown -R 10001:10001 DIR`)")


def disk_full(exc: BaseException | None, folder: Path | None = None) -> bool:
    """Whether `exc`, or an error it was raised from, is a full disk (or quota): an OSError's ENOSPC or EDQUOT,
    SQLite's "database or disk is full", or SQLite's "disk I/O error" while `folder`'s disk has next to no space
    left (SQLite says so when its shared-memory file cannot grow)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.Error) and ("disk is full" in str(exc) or (
                "disk I/O error" in str(exc) and folder is not None and space_left(folder) < 1024 * 1024)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def space_left(folder: Path) -> int:
    """Bytes this user may still write on `folder`'s disk (a large number when it cannot be told)."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return 1 << 62
    return stats.f_bavail * stats.f_frsize


@contextmanager
def disk_full_as_error(state_dir: Path) -> Iterator[None]:
    """A full disk during the block becomes a `DiskFull` naming the file (or the state folder) and the fix."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as exc:  # noqa: BLE001 - only a full disk is translated; anything else goes on as it was
        if not disk_full(exc, state_dir):
            raise
        where = getattr(exc, "filename", None) or state_dir
        raise DiskFull(f"{where}: no space left on its device ({type(exc).__name__}: {exc}); the write was"
                       " abandoned, and the version in service, the ledger and what was pushed are as they were."
                       f" Fix: free space on the disk of {state_dir} (or move --state to a larger one); the next"
                       " cycle carries on from there") from None


class EmptyPull(InputError):
    """A complete pull brought no asset at all while the cache holds some: nothing was dropped or trained."""

    def __init__(self, cached: int):
        self.cached = cached
        super().__init__(f"the platform gave no asset at all, where the last pull had {cached}: nothing was dropped,"
                         " trained or pushed. Fix: if the assets file or project was emptied by mistake, restore it;"
                         " if it is really empty now, delete the state folder's state.sqlite3 to start afresh")


class StateStore:
    """The ledger of what was pushed, the training sets, the asset cache and the label issues shown; what the cycles
    remember besides (`remembered`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.remembered = Remembered(self._connect)
        check_state_folder(self.path.parent)
        try:
            with disk_full_as_error(self.path.parent):
                self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: the ledger cannot be read ({exc}). Fix: move it aside (keep it for a"
                             " look); the next cycle rebuilds the asset cache from the platform, which is the truth"
                             " (without the ledger it cannot tell what it pushed before: the files platform skips"
                             " what its output holds, Kili and Label Studio may get the current version again)"
                             ) from None

    def _migrate(self) -> None:
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)
            later = {"pushed": (("priority", "REAL"), ("why", "TEXT"), ("prefill", "TEXT")),
                     "assets": (("label_ref", "TEXT NOT NULL DEFAULT ''"), ("reviewed_at", "TEXT NOT NULL DEFAULT ''"))}
            for table, added in later.items():  # columns a ledger of an earlier release lacks
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, kind in added:
                    if column not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    # ---- the ledger of pushed pre-annotations -------------------------------------------------------------
    def record_pushed(self, model_version: str, items: Iterable[tuple]) -> None:
        """(asset id, text hash, its priority or None[, its pre-fill {facet: [codes]}]) of each pre-annotation
        pushed."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        rows = [Pushed(*item) for item in items]
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR IGNORE INTO pushed (asset_id, model_version, text_hash, pushed_at, priority, why, prefill)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.asset_id, model_version, r.text_hash, now, r.priority.value if r.priority else None,
                  r.priority.why if r.priority else None, _json_or_none(r.prefill)) for r in rows],
            )
            db.executemany("DELETE FROM claims WHERE asset_id = ? AND model_version = ?",
                           [(r.asset_id, model_version) for r in rows])

    def last_pushed(self, asset_ids: Sequence[str]) -> dict[str, Pushed]:
        """Each asset's latest pre-annotation in the ledger, of any version (assets with none are left out)."""
        out: dict[str, Pushed] = {}
        with closing(self._connect()) as db:
            for chunk in _chunks(asset_ids):
                rows = db.execute(
                    "SELECT asset_id, text_hash, priority, why, prefill FROM pushed WHERE asset_id IN"
                    f" ({', '.join('?' * len(chunk))}) ORDER BY pushed_at, rowid", chunk).fetchall()
                for asset_id, text_hash, priority, why, prefill in rows:  # the latest last
                    out[asset_id] = Pushed(asset_id, text_hash, Priority(asset_id, priority, why or "")
                                           if priority is not None else None,
                                           json.loads(prefill) if prefill is not None else None)
        return out

    # ---- claims: one maker per pre-annotation (the worker's push, or the API's answer to Label Studio) --------------
    def claim(self, model_version: str, items: Iterable[tuple[str, str]]) -> set[str]:
        """Of (asset id, text hash), the assets that have no pre-annotation of `model_version` for that text and that
        nobody is making: they are claimed (one transaction) until `record_pushed` or `release`."""
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")
            claimed = set()
            for asset_id, text_hash in items:
                if not self._made(db, model_version, asset_id, text_hash):
                    db.execute("INSERT INTO claims (asset_id, model_version) VALUES (?, ?)", (asset_id, model_version))
                    claimed.add(asset_id)
            return claimed

    def release(self, model_version: str, asset_ids: Iterable[str]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany("DELETE FROM claims WHERE asset_id = ? AND model_version = ?",
                           [(a, model_version) for a in asset_ids])

    def clear_claims(self) -> None:
        """At the start of a cycle (one at a time per state folder): claims left by a process that died."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM claims")

    def record_answer(self, model_version: str, asset_id: str, text_hash: str,
                      prefill: dict[str, list[str]] | None = None) -> bool:
        """The API is about to answer Label Studio with a pre-annotation, which Label Studio stores: recorded as
        pushed, unless one is there already or being pushed (then the API must not answer with another)."""
        with closing(self._connect()) as db, db:
            db.execute("BEGIN IMMEDIATE")
            if self._made(db, model_version, asset_id, text_hash):
                return False
            db.execute("INSERT INTO pushed (asset_id, model_version, text_hash, pushed_at, prefill)"
                       " VALUES (?, ?, ?, ?, ?)", (asset_id, model_version, text_hash,
                                                   datetime.now(UTC).isoformat(timespec="seconds"),
                                                   _json_or_none(prefill)))
            return True

    @staticmethod
    def _made(db: sqlite3.Connection, model_version: str, asset_id: str, text_hash: str) -> bool:
        return db.execute(
            "SELECT 1 FROM pushed WHERE asset_id = ? AND model_version = ? AND text_hash = ? UNION ALL"
            " SELECT 1 FROM claims WHERE asset_id = ? AND model_version = ? LIMIT 1",
            (asset_id, model_version, text_hash, asset_id, model_version)).fetchone() is not None

    def ranking(self, model_version: str) -> list[Priority]:
        """The unlabelled assets' priorities pushed with `model_version` for their current text, highest first."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT a.asset_id, p.priority, p.why FROM assets a JOIN pushed p ON p.asset_id = a.asset_id"
                " AND p.model_version = ? AND p.text_hash = a.text_hash WHERE a.labels IS NULL"
                " AND p.priority IS NOT NULL ORDER BY p.priority DESC, a.asset_id", (model_version,)).fetchall()
        return [Priority(a, float(v), w or "") for a, v, w in rows]

    # ---- what a model was trained on ----------------------------------------------------------------------
    def record_training_set(self, model_version: str, labelled: Sequence[Asset]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT OR REPLACE INTO trained_on (model_version, asset_id, digest) VALUES (?, ?, ?)",
                [(model_version, a.id, a.label_digest) for a in labelled],
            )

    def versions_trained_on(self, asset_id: str, digest: str) -> list[int]:
        """The numbers of the versions trained when the asset had this label."""
        with closing(self._connect()) as db:
            names = db.execute("SELECT model_version FROM trained_on WHERE asset_id = ? AND digest = ?",
                               (asset_id, digest)).fetchall()
        return sorted(int(n[1:]) for (n,) in names if n[:1] == "v" and n[1:].isdigit())

    def knows_training_set(self, model_version: str) -> bool:
        with closing(self._connect()) as db:
            return db.execute("SELECT 1 FROM trained_on WHERE model_version = ? LIMIT 1",
                              (model_version,)).fetchone() is not None

    def training_set_size(self, model_version: str) -> int:
        """The labelled assets there were when `model_version` was trained (0 if this store never saw it)."""
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM trained_on WHERE model_version = ?", (model_version,)).fetchone()[0]

    def label_changes(self, model_version: str, labelled: Sequence[Asset]) -> int:
        """Labelled assets added, changed or gone since `model_version` was trained (all of them if this store
        never saw that version trained)."""
        with closing(self._connect()) as db:
            before = dict(db.execute("SELECT asset_id, digest FROM trained_on WHERE model_version = ?",
                                     (model_version,)))
        now = {a.id: a.label_digest for a in labelled}
        changed = sum(1 for asset_id, digest in now.items() if before.get(asset_id) != digest)
        return changed + sum(1 for asset_id in before if asset_id not in now)

    # ---- the asset cache --------------------------------------------------------------------------------------
    def merge_assets(self, assets: Iterable[Asset], complete: bool, chunk: int = 1000) -> int:
        """Store pulled assets (streamed, `chunk` at a time). After a complete pull, assets it did not see are
        dropped: they were deleted on the platform; but a complete pull that brought nothing at all drops nothing
        (an emptied file or project is far likelier a mistake than the truth: see `EmptyPull`). Returns how many
        assets the pull brought."""
        with closing(self._connect()) as db:
            pull = (db.execute("SELECT MAX(pull) FROM assets").fetchone()[0] or 0) + 1
            seen = 0
            rows: list[tuple] = []

            def flush() -> None:
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO assets (asset_id, text, text_hash, labels, version, pull, label_ref,"
                        " reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                rows.clear()

            for asset in assets:
                labels = json.dumps(sorted(asset.labels)) if asset.labels is not None else None
                rows.append((asset.id, asset.text, asset.text_hash, labels, asset.version, pull, asset.label_ref,
                             asset.reviewed_at))
                seen += 1
                if len(rows) >= chunk:
                    flush()
            flush()
            if complete and not seen:
                cached = db.execute("SELECT COUNT(*) FROM assets").fetchone()[0]
                if cached:
                    raise EmptyPull(cached)
            if complete:
                with db:
                    db.execute("DELETE FROM assets WHERE pull < ?", (pull,))
        return seen

    def cached_text(self, asset_id: str, version: str) -> str | None:
        with closing(self._connect()) as db:
            return _cached_text(db, asset_id, version)

    @contextmanager
    def texts(self) -> Iterator[CachedTexts]:
        """The cached texts through one connection, for a pull that asks for each of its assets' (a connection of
        its own per asset cost more than the look-up)."""
        with closing(self._connect()) as db:
            yield CachedTexts(db)

    def labelled_assets(self) -> list[Asset]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT asset_id, text, labels, version, label_ref, reviewed_at FROM assets"
                              " WHERE labels IS NOT NULL ORDER BY asset_id")
            return [Asset(a, t, frozenset(json.loads(ls)), v, ref, rev) for a, t, ls, v, ref, rev in rows]

    # ---- likely label mistakes shown on the platform ------------------------------------------------------------
    def issues_pushed(self, destination: str, asset_ids: Sequence[str]) -> set[tuple[str, str, str, str]]:
        """(asset id, label digest, code, kind) of the label issues already shown at `destination` on these assets."""
        with closing(self._connect()) as db:
            out: set[tuple[str, str, str, str]] = set()
            for chunk in _chunks(asset_ids):
                out.update(db.execute(
                    "SELECT asset_id, digest, code, kind FROM label_issues_pushed WHERE destination = ? AND asset_id"
                    f" IN ({','.join('?' * len(chunk))})", (destination, *chunk)).fetchall())
            return out

    def record_issues_pushed(self, destination: str, model_version: str,
                             issues: Iterable[tuple[str, str, str, str]]) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR IGNORE INTO label_issues_pushed (destination, asset_id, digest, code, kind,"
                           " model_version, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(destination, a, d, c, k, model_version, now) for a, d, c, k in issues])

    def count_assets(self) -> tuple[int, int]:
        """(labelled, unlabelled)"""
        with closing(self._connect()) as db:
            row = db.execute("SELECT COUNT(labels), COUNT(*) - COUNT(labels) FROM assets").fetchone()
            return int(row[0]), int(row[1])

    def count_unlabelled_without(self, model_version: str) -> int:
        with closing(self._connect()) as db:
            return db.execute(
                "SELECT COUNT(*) FROM assets a LEFT JOIN pushed p ON p.asset_id = a.asset_id"
                " AND p.model_version = ? AND p.text_hash = a.text_hash WHERE a.labels IS NULL AND p.asset_id IS NULL",
                (model_version,)).fetchone()[0]

    def unlabelled_without(self, model_version: str, batch: int) -> Iterator[list[Asset]]:
        """Unlabelled assets with no pre-annotation of `model_version` for their current text, in batches."""
        last = ""
        while True:
            with closing(self._connect()) as db:
                rows = db.execute(
                    "SELECT a.asset_id, a.text, a.version FROM assets a LEFT JOIN pushed p"
                    " ON p.asset_id = a.asset_id AND p.model_version = ? AND p.text_hash = a.text_hash"
                    " WHERE a.labels IS NULL AND p.asset_id IS NULL AND a.asset_id > ?"
                    " ORDER BY a.asset_id LIMIT ?", (model_version, last, batch)).fetchall()
            if not rows:
                return
            yield [Asset(a, t, None, v) for a, t, v in rows]
            last = rows[-1][0]

    def forget_pushed(self) -> int:
        """Forget what was pushed (the destination changed): every pre-annotation is made again. Returns how many
        records were forgotten."""
        with closing(self._connect()) as db, db:
            forgotten = db.execute("DELETE FROM pushed").rowcount
            db.execute("DELETE FROM claims")
        return forgotten


class Remembered:
    """What the cycles remember between runs besides the ledger: where the pulls stand, and where the pushes went
    (the state file's `cursors` table, one value per name)."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]):
        self._connect = connect

    def pull_marks(self) -> PullMarks:
        values = self._values(_PULL_MARKS.values())
        return PullMarks(cursor=values.get("assets"), reached_at=float(values.get("assets_reached") or 0),
                         covered=values.get("assets_covered"),
                         last_complete=float(values.get("last_complete_pull") or 0))

    def save_pull_marks(self, marks: PullMarks) -> None:
        """All of them in one transaction (a pull's cursor and the time it was reached never part)."""
        values = {name: getattr(marks, field) for field, name in _PULL_MARKS.items()}
        self._save({name: str(value) for name, value in values.items() if value is not None})

    def destination(self) -> str | None:
        """Where the pre-annotations the ledger records were pushed (a file, a project); None before any push."""
        return self._values(["destination"]).get("destination")

    def set_destination(self, destination: str) -> None:
        self._save({"destination": destination})

    def _values(self, names: Iterable[str]) -> dict[str, str]:
        names = list(names)
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT name, value FROM cursors WHERE name IN ({','.join('?' * len(names))})", names)
            return dict(rows.fetchall())

    def _save(self, values: dict[str, str]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)", values.items())
