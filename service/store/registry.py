"""The model registry on disk: one folder per version (model, metadata), and a pointer to the current one.

Layout under <state>/models/:
    v0001/model.joblib   the fitted PreAnnotator
    v0001/slice_model.joblib   the same without the evaluation slice, when model.joblib was refitted on it too
    v0001/report.html    its evaluation report
    v0001/meta.json      number, name, creation time, training-set fingerprint, configuration, held-out metrics
    v0001/label_issues.csv   the likely mistakes in the human labels it was trained on (service.quality.label_issues)
    CURRENT              the number of the version that serves predictions

Writes are atomic (a temporary folder renamed into place; CURRENT replaced by rename), so a crash never leaves a
half-written version visible.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import joblib

from automl.errors import ClassieError
from automl.metrics import FacetScore, LevelScore, Scores

if TYPE_CHECKING:  # the model's libraries load with the model file, not with the registry
    from automl.model import PreAnnotator

__all__ = ["ModelRegistry", "ModelUnloadable", "ModelVersion", "RegistryError"]

log = logging.getLogger(__name__)
_VERSION_DIR = re.compile(r"^v(\d{4,})$")
SLICE_MODEL = "slice_model.joblib"  # beside model.joblib when that was refitted on the evaluation slice too
REPORT = "report.html"  # the version's evaluation report, written after it is registered


class RegistryError(ClassieError):
    """The registry cannot give what was asked (no model yet, a missing version); the message says what to do."""

    exit_code = 2


class ModelUnloadable(RegistryError):
    """A version's model file cannot be loaded by this release (written by an incompatible one, or damaged)."""


def software_versions() -> dict[str, str]:
    """What a version was written with: a later release that cannot load it says which one did."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("classie-automl", "auto-sklearn", "scikit-learn", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


@dataclass
class ModelVersion:
    number: int
    created_at: str
    fingerprint: str
    config: dict
    metrics: list[LevelScore]  # held-out quality per facet and level
    summary: dict = field(default_factory=dict)
    n_train: int = 0
    setup_fingerprint: str = ""  # taxonomy and learning settings only: a change retrains whatever the labels
    software: dict = field(default_factory=dict)  # package versions that wrote it (empty before they were kept)
    facets: list[FacetScore] = field(default_factory=list)  # held-out effort and calibration per facet
    gate: dict = field(default_factory=dict)  # the promotion gate's verdict (service.quality.promotion.Verdict)

    @property
    def rejected(self) -> bool:
        """The promotion gate kept it from becoming current (`models --promote N` may still make it so)."""
        return self.gate.get("promoted") is False

    @property
    def scores(self) -> Scores:
        return Scores(self.metrics, self.facets)

    @property
    def name(self) -> str:
        return f"v{self.number}"

    def to_dict(self) -> dict:
        return {**asdict(self), "metrics": [m.to_dict() for m in self.metrics],
                "facets": [f.to_dict() for f in self.facets]}

    @classmethod
    def read(cls, meta: Path) -> ModelVersion:
        data = json.loads(meta.read_text(encoding="utf-8"))
        return cls(**{**data, "metrics": [LevelScore.from_dict(m) for m in data.get("metrics") or []],
                      "facets": [FacetScore.from_dict(f) for f in data.get("facets") or []]})


class ModelRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._loaded: tuple[int, PreAnnotator] | None = None
        self._loading = threading.Lock()  # the API's worker threads: the first requests load a version once
        self._meta: dict[int, ModelVersion] = {}  # read once per version: the API asks on every request

    def _dir(self, number: int) -> Path:
        return self.root / f"v{number:04d}"

    def versions(self) -> list[ModelVersion]:
        """Every readable version, oldest first (a damaged meta.json is logged and left out)."""
        if not self.root.is_dir():
            return []
        out = []
        for child in sorted(self.root.iterdir()):
            found = _VERSION_DIR.match(child.name)
            if found and (child / "meta.json").is_file():
                version = self._read(int(found.group(1)))
                if version is not None:
                    out.append(version)
        return sorted(out, key=lambda v: v.number)

    def _read(self, number: int) -> ModelVersion | None:
        """A version's metadata (read once: a version's folder never changes once renamed into place), or None
        when its meta.json is damaged."""
        if number not in self._meta:
            meta = self._dir(number) / "meta.json"
            try:
                self._meta[number] = ModelVersion.read(meta)
            except (ValueError, TypeError, KeyError, OSError) as exc:  # truncated, garbage, or not ours
                log.warning("%s is damaged (%s: %s); that version is left out. Fix: restore it, or delete %s",
                            meta, type(exc).__name__, str(exc)[:200], meta.parent)
                return None
        return self._meta[number]

    def current(self) -> ModelVersion | None:
        """The version CURRENT names; when its metadata is damaged, the newest good version before it that the gate
        did not reject (logged)."""
        pointer = self.root / "CURRENT"
        if not pointer.is_file():
            return None
        text = pointer.read_text(encoding="utf-8", errors="replace").strip()
        if not text.isdigit():
            have = ", ".join(v.name for v in self.versions()) or "none"
            raise RegistryError(f"{pointer} holds {text[:40]!r}, not a version number. Fix: `classie-automl models"
                                f" --promote N` with one of the versions ({have}), or delete CURRENT to retrain.")
        number = int(text)
        if not (self._dir(number) / "meta.json").is_file():
            raise RegistryError(f"{pointer} names version {number}, which is missing. Fix: `classie-automl models"
                                " --promote N` with an existing version, or delete CURRENT to retrain.")
        version = self._read(number)
        if version is None:
            earlier = [v for v in self.versions() if v.number < number and not v.rejected]
            if not earlier:
                raise RegistryError(f"version {number}, the current one, is damaged and there is no earlier good"
                                    f" version. Fix: delete {self._dir(number)} and CURRENT; the next cycle trains.")
            version = earlier[-1]
            log.warning("serving %s, the newest good version before the damaged v%d. Fix: `classie-automl models"
                        " --promote %d` to make that lasting, or restore v%d", version.name, number, version.number,
                        number)
        return version

    def version(self, number: int) -> ModelVersion:
        meta = self._dir(number) / "meta.json"
        if not meta.is_file() or self._read(number) is None:
            have = ", ".join(v.name for v in self.versions()) or "none"
            raise RegistryError(f"no model version {number} in {self.root} that can be read (versions: {have})."
                                " Fix: give one of them (`classie-automl models` lists them).")
        return self._meta[number]

    def latest(self) -> ModelVersion | None:
        """The newest version, current or not."""
        versions = self.versions()
        return versions[-1] if versions else None

    def status(self, version: ModelVersion) -> str:
        """current (serving), rejected (by the promotion gate, not serving) or previous (served, or could have)."""
        current = self.current()
        if current is not None and current.number == version.number:
            return "current"
        return "rejected" if version.rejected else "previous"

    def require_current(self) -> ModelVersion:
        current = self.current()
        if current is None:
            raise RegistryError(f"no model in {self.root}. Fix: run `classie-automl train` first.")
        return current

    def load(self, version: ModelVersion) -> PreAnnotator:
        with self._loading:
            if self._loaded and self._loaded[0] == version.number:
                return self._loaded[1]
            model = self._unpickle(version, self._dir(version.number) / "model.joblib")
            self._loaded = (version.number, model)
            return model

    def loadable_before(self, version: ModelVersion) -> ModelVersion | None:
        """When `version` cannot be loaded although this release wrote it (its model file is damaged, not from
        another release): the newest earlier version of this release, not rejected, that loads. None otherwise, or
        when there is none (then a new version must be trained)."""
        mine = software_versions()
        if version.software != mine:
            return None
        for earlier in reversed([v for v in self.versions() if v.number < version.number and not v.rejected]):
            if earlier.software != mine:
                return None
            try:
                self.load(earlier)
                return earlier
            except ModelUnloadable:
                continue
        return None

    def report_path(self, version: ModelVersion) -> Path:
        return self._dir(version.number) / REPORT

    def file_path(self, version: ModelVersion, name: str) -> Path:
        """One of the files written with the version (see `register`)."""
        return self._dir(version.number) / name

    def load_slice_model(self, version: ModelVersion) -> PreAnnotator:
        """The version as fitted without the evaluation slice (the served model itself when it was not refitted)."""
        path = self._dir(version.number) / SLICE_MODEL
        return self._unpickle(version, path) if path.is_file() else self.load(version)

    @staticmethod
    def _unpickle(version: ModelVersion, path: Path) -> PreAnnotator:
        try:
            return joblib.load(path)
        except Exception as exc:  # unpickling runs arbitrary class code: any error means "not loadable here"
            written = ", ".join(f"{k} {v}" for k, v in version.software.items()) or "an older release"
            raise ModelUnloadable(f"{version.name} cannot be loaded by this release ({type(exc).__name__}: {exc});"
                                  f" it was written by {written}") from exc

    def register(self, model: PreAnnotator, fingerprint: str, config: dict, promote: bool = True,
                 setup_fingerprint: str = "", gate: dict | None = None,
                 slice_model: PreAnnotator | None = None, files: dict[str, str] | None = None) -> ModelVersion:
        """`slice_model`: the version's fit without the evaluation slice, when `model` was refitted on it too (the
        promotion gate scores that one on the slice). `files`: more of the version's files (name: text), written
        with it."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            for name, text in (files or {}).items():
                (staging / name).write_text(text, encoding="utf-8")
            joblib.dump(model, staging / "model.joblib", compress=3)
            if slice_model is not None:
                joblib.dump(slice_model, staging / SLICE_MODEL, compress=3)
            existing = [v.number for v in self.versions()]
            number = max(existing, default=0) + 1
            while True:
                version = ModelVersion(
                    number=number,
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    fingerprint=fingerprint,
                    config=config,
                    metrics=list(model.heldout_.levels),
                    facets=list(model.heldout_.facets),
                    summary=model.summary(),
                    n_train=model.n_train_,
                    setup_fingerprint=setup_fingerprint,
                    software=software_versions(),
                    gate=gate or {},
                )
                (staging / "meta.json").write_text(json.dumps(version.to_dict(), indent=1), encoding="utf-8")
                try:
                    os.rename(staging, self._dir(number))  # fails if another process took this number
                    break
                except OSError:
                    number += 1
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._loaded = (number, model)
        if promote:
            self.promote(number)
        return version

    def promote(self, number: int) -> None:
        if not (self._dir(number) / "meta.json").is_file():
            raise RegistryError(f"no model version {number} in {self.root}")
        tmp = self.root / f".CURRENT.{os.getpid()}"
        tmp.write_text(f"{number}\n")
        os.replace(tmp, self.root / "CURRENT")
