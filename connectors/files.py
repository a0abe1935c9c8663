"""The embedded platform: assets in a CSV or JSONL file, pre-annotations appended to a JSONL file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from automl.errors import InputError
from automl.settings import TaxonomySettings
from automl.taxonomy import CodeNotFound, Taxonomy
from connectors.base import Asset, LabelFlag, PreAnnotation, Priority, Pull, PushResult, SkipLog, TextCache
from connectors.settings import FilesSettings

__all__ = ["AssetFileError", "FilesConnector", "load_assets", "read_assets"]

log = logging.getLogger(__name__)
DEFAULT_COLUMNS = FilesSettings()  # the [files] column settings when none are given (frozen: shared safely)


class AssetFileError(InputError):
    """The assets file cannot be read at all; the message names the file and the fix."""


def _assets_folder(path: Path) -> AssetFileError:
    return AssetFileError(f"{path} is a folder, not an assets file. Fix: give the CSV, TSV or JSONL file in it"
                          " (--assets or [files] assets).")


def _records(path: Path, encoding: str, columns: Sequence[str]) -> Iterator[tuple[str, dict | None, str]]:
    """Yield (place, record, problem) for every record; a record that cannot be read comes with its problem. The
    file is read as a stream: a pull's memory does not grow with the file."""
    if path.is_dir():
        raise _assets_folder(path)
    if not path.is_file():
        raise AssetFileError(f"{path}: no such file. Fix: check the assets path (--assets or [files] assets).")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv", ".txt", ".tsv"):
        raise AssetFileError(f"{path}: unknown format {path.suffix!r}. Fix: use a .csv or .jsonl file.")
    fix_columns = "Fix: rename the column in the file or set id_column/text_column/labels_column in [files]."
    with _open_text(path, encoding) as handle:
        if suffix in (".csv", ".txt", ".tsv"):
            yield from _csv_records(path, handle, encoding, columns, fix_columns)
            return
        checked = False
        for number, line in enumerate(handle, start=1):
            place = f"{path.name}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield place, None, f"not valid JSON ({exc.msg})"
                continue
            if not isinstance(record, dict):
                yield place, None, "not a JSON object"
                continue
            if not checked:
                missing = [c for c in columns if c not in record]
                if missing:
                    raise AssetFileError(
                        f"{place}: record has no {', '.join(map(repr, missing))} field (it has"
                        f" {', '.join(map(repr, record)) or 'none'}). {fix_columns}"
                    )
                checked = True
            yield place, record, ""


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    """The file as text, past a byte-order mark. surrogateescape keeps undecodable bytes visible per record, so one
    bad row is skipped, not the whole file; newline="" leaves line ends inside quoted CSV fields to the reader."""
    handle = path.open(encoding=encoding, errors="surrogateescape", newline="")
    if handle.read(1) != "\ufeff":
        handle.seek(0)
    return handle


def _csv_records(path: Path, handle: io.TextIOWrapper, encoding: str, columns: Sequence[str],
                 fix_columns: str) -> Iterator[tuple[str, dict | None, str]]:
    # Long texts are fine; the 128 KiB default is not.
    csv.field_size_limit(max(csv.field_size_limit(), path.stat().st_size))
    dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
    reader = csv.DictReader(handle, dialect=dialect)
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise AssetFileError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))}; the header has"
            f" {', '.join(map(repr, header)) or 'nothing'}. {fix_columns}"
        )
    last: tuple[str, dict, int] | None = None  # held back one record: it may have swallowed the rest of the file
    end = 1
    try:
        for record in reader:
            if last is not None:
                yield last[0], last[1], ""
            if None in record:  # more fields than the header: an unquoted delimiter in the text shifted the rest
                yield (f"{path.name}:{reader.line_num}", None, f"{len(header) + len(record[None])} fields where the"
                       f" header has {len(header)} (fix: quote a text that holds the delimiter)")
                last, end = None, reader.line_num
                continue
            last, end = (f"{path.name}:{reader.line_num}", record, end + 1), reader.line_num
    except csv.Error as exc:
        raise AssetFileError(f"{path.name}:{reader.line_num}: the CSV cannot be parsed ({exc}). Fix: repair the"
                             " quoting on that line; records before it were read.") from exc
    if last is not None:
        if end > last[2] and _quote_left_open(path, encoding, dialect):
            yield (f"{path.name}:{last[2]}-{end}", None, "a quote opened and never closed (the record ran to the end"
                   " of the file; fix: close the quote on its first line)")
        else:
            yield last[0], last[1], ""


def _quote_left_open(path: Path, encoding: str, dialect: str) -> bool:
    """Whether the file ends inside a quoted field (the lenient reader then takes the rest as one text)."""
    try:
        with _open_text(path, encoding) as handle:
            for _ in csv.reader(handle, dialect=dialect, strict=True):
                pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


# What Python's surrogateescape error handler puts in place of bytes that do not decode.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _undecodable(value: str) -> bool:
    return _ESCAPED_BYTE.search(value) is not None


def read_assets(
    path: Path,
    taxonomy: Taxonomy,
    skipped: SkipLog,
    columns: FilesSettings = DEFAULT_COLUMNS,
    require_labels: bool = False,
) -> Iterator[Asset]:
    """Read assets with the [files] column settings; every record that cannot be used is skipped with its place and
    reason in `skipped`."""
    seen: dict[str, str] = {}
    encoding = columns.encoding
    for place, record, problem in _records(Path(path), encoding, [columns.id_column, columns.text_column]):
        if record is None:
            skipped.skip(problem, place)
            continue
        raw_id, text = record.get(columns.id_column), record.get(columns.text_column)
        raw_labels = record.get(columns.labels_column)
        if raw_id is None or str(raw_id).strip() == "":
            skipped.skip("empty id", place)
            continue
        asset_id = str(raw_id).strip()
        if not isinstance(text, str):
            skipped.skip("text is missing or not a string", place)
            continue
        if any(_undecodable(v) for v in (asset_id, text, raw_labels if isinstance(raw_labels, str) else "")):
            skipped.skip(f"bytes that are not valid {encoding} (fix: save the file as {encoding} or set"
                         " [files] encoding)", place)
            continue
        if not text.strip():
            skipped.skip("empty text", place)
            continue
        if asset_id in seen:
            skipped.skip("duplicate id (the first record is kept)", f"{place} (first at {seen[asset_id]})")
            continue
        seen[asset_id] = place
        if not _labels_shape(raw_labels):
            skipped.skip(f"labels {json.dumps(raw_labels)[:60]} are not a text or a list of codes", place)
            continue
        names = _parse_labels(raw_labels, columns.label_separator)
        labels: frozenset[str] | None = None
        if names is not None:
            labels = _resolve(names, taxonomy, skipped, place)
            if not labels:
                continue
        elif require_labels:
            skipped.skip("no labels", place)
            continue
        yield Asset(asset_id, text, labels)


def load_assets(path: Path, taxonomy: Taxonomy, columns: FilesSettings = DEFAULT_COLUMNS,
                require_labels: bool = False, skipped: SkipLog | None = None) -> list[Asset]:
    """Every usable asset of a file at once; the records skipped are counted in `skipped` and logged with their
    places and reasons."""
    skipped = SkipLog() if skipped is None else skipped
    assets = list(read_assets(path, taxonomy, skipped, columns, require_labels))
    skipped.report(str(path))
    return assets


def _resolve(names: list[str], taxonomy: Taxonomy, skipped: SkipLog, place: str) -> frozenset[str]:
    """The taxonomy's codes for the names of a record's labels (codes, paths, or keys found at one place only);
    each name that fits no node, or several, is skipped with the reason."""
    codes, ambiguous = set(), False
    for name in sorted(set(names)):
        try:
            codes.add(taxonomy.resolve(name))
        except CodeNotFound as exc:
            if exc.candidates:
                ambiguous = True
                skipped.skip(f"label {name!r} is at {len(exc.candidates)} places of the taxonomy"
                             f" ({', '.join(exc.candidates)}; label dropped; fix: write its path)", place)
            else:
                skipped.skip(f"label {name!r} is not in the taxonomy (label dropped)", place)
    if not codes:
        skipped.skip("no label could be placed in the taxonomy (asset left out)" if ambiguous
                     else "every label is outside the taxonomy (asset left out)", place)
    return frozenset(codes)


def _labels_shape(raw) -> bool:
    """Labels are absent, a text of codes, or a list of codes (a JSON number is a code too)."""
    def code(value) -> bool:
        return isinstance(value, (str, int)) and not isinstance(value, bool)
    return raw is None or code(raw) or (isinstance(raw, list) and all(code(c) for c in raw))


def _parse_labels(raw, separator: str) -> list[str] | None:
    if raw is None:
        return None
    if isinstance(raw, list):
        codes = [str(c).strip() for c in raw]
    else:
        codes = [c.strip() for c in str(raw).split(separator)]
    codes = [c for c in codes if c]
    return codes or None


class PreAnnotationFile:
    """Append-only JSONL of pre-annotations; knows what it holds so that nothing is written twice."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._keys: set[tuple[str, str, str]] | None = None

    def keys(self) -> set[tuple[str, str, str]]:
        if self._keys is None:
            self._keys = set()
            if self.path.exists():
                cut_partial_line(self.path)
                with self.path.open(encoding="utf-8", errors="replace") as handle:
                    for number, line in enumerate(handle, start=1):
                        try:
                            rec = json.loads(line)
                            self._keys.add((rec["asset_id"], rec["model_version"], rec["text_sha256"]))
                        except (json.JSONDecodeError, KeyError, TypeError):
                            log.warning("%s:%d: unreadable pre-annotation line left as is", self.path, number)
        return self._keys

    def append(self, records: list[dict]) -> None:
        keys = self.keys()
        append_whole(self.path, "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records).encode())
        keys.update((r["asset_id"], r["model_version"], r["text_sha256"]) for r in records)


def cut_partial_line(path: Path) -> None:
    """A crash mid-write can leave a partial last line: cut it off (it was never a complete record)."""
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        chunk = min(size, 1 << 20)
        handle.seek(size - chunk)
        tail = handle.read(chunk)
        cut = tail.rfind(b"\n")
        keep = size - chunk + cut + 1 if cut >= 0 else 0
        log.warning("%s: removing a partial last line (%d bytes) left by an interrupted write", path, size - keep)
        handle.truncate(keep)


def append_whole(path: Path, data: bytes) -> None:
    """Append `data` and sync it, or leave the file as it was (a full disk: cutting back needs no space)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    view = memoryview(data)
    with path.open("ab", buffering=0) as handle:
        start = handle.seek(0, os.SEEK_END)
        try:
            while view:
                view = view[handle.write(view):]
            os.fsync(handle.fileno())
        except OSError:
            handle.truncate(start)
            raise


ISSUE_COLUMNS = ["flagged_at", "model_version", "asset_id", "kind", "code", "name", "message"]


class FilesConnector:
    """Assets from `settings.assets`, the taxonomy from `taxonomy.path` (both set), pre-annotations appended to
    `output`."""

    platform = "files"

    def __init__(self, settings: FilesSettings, taxonomy: TaxonomySettings, output: Path):
        self.settings, self.taxonomy_settings = settings, taxonomy
        self.skipped = SkipLog()
        # Said when the service starts, not at every cycle: a folder (a container's mount) stays a folder.
        if Path(output).is_dir():
            raise AssetFileError(f"{output} is a folder; pre-annotations are written to a file. Fix: give a file path"
                                 f" (--output or [files] output), e.g. {Path(output) / 'preannotations.jsonl'}.")
        if settings.assets is not None and Path(settings.assets).is_dir():
            raise _assets_folder(Path(settings.assets))
        self.output = PreAnnotationFile(output)
        self._taxonomy: tuple[tuple, Taxonomy] | None = None

    @property
    def destination(self) -> str:
        return f"files:{Path(self.output.path).resolve()}"

    def pull_taxonomy(self) -> Taxonomy:
        """The taxonomy file, re-read when it changes (a polling worker picks up edits)."""
        t = self.taxonomy_settings
        if t.path is None:
            return t.load()  # which says that no file is set
        try:
            stat = Path(t.path).stat()
        except OSError:  # missing, or under something that is not a folder: load_taxonomy says which
            return t.load()
        key = (stat.st_mtime_ns, stat.st_size)
        if self._taxonomy is None or self._taxonomy[0] != key:
            self._taxonomy = (key, t.load())
        return self._taxonomy[1]

    def pull(self, cursor: str | None = None, texts: TextCache | None = None) -> Pull:
        """A file has no change feed: every pull that reads it is complete. The cursor is the fingerprint of what
        the pull read; given it back while the file, the taxonomy and the [files] settings are still the same, the
        pull reads nothing (a no-change cycle over a large file costs one hash of it)."""
        fingerprint = self.fingerprint()
        if cursor is not None and cursor == fingerprint:
            return Pull(iter(()), complete=False, cursor=lambda: fingerprint)
        return Pull(self.pull_assets(), complete=True, cursor=lambda: fingerprint)

    def fingerprint(self) -> str | None:
        """What the assets read from the file depend on: its bytes, the taxonomy and the [files] settings (None when
        the file cannot be opened, or none is set: the read says why)."""
        if self.settings.assets is None:
            return None
        try:
            with Path(self.settings.assets).open("rb") as handle:
                digest = hashlib.file_digest(handle, "sha256")
        except OSError:
            return None
        digest.update(json.dumps([self.settings.model_dump(mode="json"), self.pull_taxonomy().fingerprint_rows()],
                                 sort_keys=True, default=str).encode())
        return f"sha256:{digest.hexdigest()}"

    def pull_assets(self) -> Iterator[Asset]:
        if self.settings.assets is None:
            raise AssetFileError("no assets file is set. Fix: pass --assets or set [files] assets.")
        self.skipped = SkipLog()
        yield from read_assets(self.settings.assets, self.pull_taxonomy(), self.skipped, self.settings)
        self.skipped.report(str(self.settings.assets))

    def push(self, items: Sequence[PreAnnotation], model_version: str) -> PushResult:
        taxonomy = self.pull_taxonomy()
        keys = self.output.keys()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        records: list[dict[str, object]] = []
        result = PushResult()
        for item in items:
            if (item.asset_id, model_version, item.text_hash) in keys:
                result.already += 1
                continue
            record: dict[str, object] = {"asset_id": item.asset_id, "model_version": model_version,
                                         "created_at": now, "text_sha256": item.text_hash,
                                         "facets": _listed(taxonomy, item.proposals)}
            if item.priority is not None:
                record["priority"] = item.priority
            record["suggestions"] = _listed(taxonomy, item.suggestions)
            records.append(record)
        if records:
            self.output.append(records)
        result.written = len(records)
        return result

    @property
    def issues_path(self) -> Path:
        return self.output.path.with_name("label_issues.csv")

    def push_label_issues(self, flags: Sequence[LabelFlag], model_version: str) -> list[LabelFlag]:
        """Appended to `label_issues.csv` beside the output (one row per flag, header first), whole or not at all."""
        if not flags:
            return []
        path, taxonomy = self.issues_path, self.pull_taxonomy()
        if path.exists():
            cut_partial_line(path)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator="\n")
        if not path.exists() or path.stat().st_size == 0:
            out.writerow(ISSUE_COLUMNS)
        out.writerows([now, model_version, f.asset_id, f.kind, f.code,
                       taxonomy.nodes[f.code].name if f.code in taxonomy else "", f.message] for f in flags)
        append_whole(path, buffer.getvalue().encode("utf-8"))
        return list(flags)

    @property
    def ranking_path(self) -> Path:
        return self.output.path.with_name("next_to_label.csv")

    def push_priorities(self, ranking: Sequence[Priority], fresh: Collection[str]) -> int:
        """`next_to_label.csv` beside the output: every unlabelled asset, the one to label first on top (rank, id,
        priority, why), replaced whole by an atomic rename."""
        path = self.ranking_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", dir=path.parent, prefix=".next-",
                                         delete=False) as handle:
            out = csv.writer(handle)
            out.writerow(["rank", "id", "priority", "why"])
            out.writerows((n, p.asset_id, f"{p.value:.4f}", p.why) for n, p in enumerate(ranking, 1))
        os.replace(handle.name, path)
        return len(ranking)


def _listed(taxonomy: Taxonomy, by_facet: dict) -> dict:
    return {facet: [{"code": p.code, "name": taxonomy.nodes[p.code].name, "confidence": p.confidence,
                     "source": p.source} for p in proposals] for facet, proposals in by_facet.items()}
