"""Configuration: a TOML file, then environment variables (CLASSIE_SECTION__KEY), then command-line flags."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from automl.features import TextSettings
from automl.model import ModelSettings
from automl.search import SearchSettings


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the setting, where it came from, and the fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilesConfig(_Section):
    assets: Path | None = None
    output: Path | None = None  # default: <state>/preannotations.jsonl
    id_column: str = "id"
    text_column: str = "text"
    labels_column: str = "labels"
    label_separator: str = ";"
    encoding: str = "utf-8"


class KiliConfig(_Section):
    project_id: str | None = None
    endpoint: str | None = None  # else KILI_API_ENDPOINT, else Kili's cloud; the key only ever from KILI_API_KEY
    model_name_prefix: str = "classie-automl"  # predictions are named <prefix>-v<N>
    push_batch: int = Field(100, ge=1, le=1000)


class LabelStudioConfig(_Section):
    url: str | None = None  # else LABEL_STUDIO_URL; the token only ever from LABEL_STUDIO_API_KEY
    project_id: int | None = None
    earlier_versions: Literal["keep", "remove"] = "keep"  # predictions of earlier versions on re-predicted tasks
    push_batch: int = Field(500, ge=1, le=5000)


class TaxonomyConfig(_Section):
    path: Path | None = None
    default_facet: str = "subject"
    facet_roots: dict[str, list[str]] = Field(default_factory=dict)


class ModelConfig(_Section):
    budget_seconds: int = Field(300, ge=1, description="total auto-sklearn search time per training")
    per_run_seconds: int | None = Field(None, ge=1)
    memory_mb: int = Field(3072, ge=256)
    seed: int = 1
    max_evaluations: int | None = Field(None, ge=1, description="cap on pipelines tried per search")
    ensemble_size: int = Field(10, ge=1)
    max_members: int = Field(3, ge=1)
    n_jobs: int = Field(1, ge=1)
    min_examples: int = Field(10, ge=2)
    cv_folds: int = Field(5, ge=2)
    max_chars: int = Field(3000, ge=1)
    max_df: float = Field(0.2, gt=0, le=1)
    min_df: int = Field(2, ge=1)
    ngram_max: int = Field(2, ge=1, le=3)
    hierarchy: Literal["imply_parents", "require_parent"] = "imply_parents"
    target_precision: float | None = Field(None, gt=0, le=1, description="None: F1-optimal thresholds")

    def to_settings(self, state_dir: Path) -> ModelSettings:
        return ModelSettings(
            text=TextSettings(max_chars=self.max_chars, max_df=self.max_df, min_df=self.min_df,
                              ngram_max=self.ngram_max),
            search=SearchSettings(
                per_run_seconds=self.per_run_seconds, memory_mb=self.memory_mb, seed=self.seed,
                max_evaluations=self.max_evaluations, ensemble_size=self.ensemble_size,
                max_members=self.max_members, n_jobs=self.n_jobs, work_dir=str(state_dir / "tmp"),
                log_file=str(state_dir / "logs" / "autosklearn.log"),
            ),
            budget_seconds=self.budget_seconds,
            min_examples=self.min_examples,
            cv_folds=self.cv_folds,
            hierarchy=self.hierarchy,
            target_precision=self.target_precision,
        )

    def fingerprint(self) -> dict[str, Any]:
        """The settings that change what a model learns (not how long it may search)."""
        learning = {"max_chars", "max_df", "min_df", "ngram_max", "min_examples", "hierarchy", "target_precision"}
        return self.model_dump(include=learning, exclude_none=True)


class WorkerConfig(_Section):
    interval_seconds: float = Field(60.0, gt=0)
    batch_size: int = Field(500, ge=1)
    # Retrain when at least this many labelled assets were added, changed or removed since the current model...
    retrain_min_changes: int = Field(1, ge=1)
    # ...and they are at least this fraction of the labelled assets the current model was trained on.
    retrain_min_fraction: float = Field(0.0, ge=0, le=10)
    # Incremental pulls between complete ones; a complete pull also notices assets deleted on the platform.
    full_pull_seconds: float = Field(3600.0, ge=0)
    # `classie-automl health` calls the worker stuck when its heartbeat is older than this (it beats at every page
    # pulled, training poll, batch pushed, and every 30 s while waiting).
    stale_after_seconds: float = Field(600.0, gt=0)


class ApiConfig(_Section):
    debounce_seconds: float = Field(10.0, ge=0)  # webhook events within this quiet time make one cycle
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_tasks: int = Field(1000, ge=1)
    text_key: str = "text"  # the task data field read when a /predict call brings no label_config


class EvaluationConfig(_Section):
    test: Path | None = None  # a labelled assets file; `run --once` then reports quality against it


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIE_", env_nested_delimiter="__", extra="forbid")

    platform: Literal["files", "kili", "label-studio"] = "files"
    state_dir: Path = Path("state")
    files: FilesConfig = Field(default_factory=FilesConfig)
    kili: KiliConfig = Field(default_factory=KiliConfig)
    label_studio: LabelStudioConfig = Field(default_factory=LabelStudioConfig)
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    @property
    def output_path(self) -> Path:
        return self.files.output or self.state_dir / "preannotations.jsonl"


_PATHS = (("state_dir",), ("files", "assets"), ("files", "output"), ("taxonomy", "path"), ("evaluation", "test"))


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _resolve_paths(data: dict, root: Path) -> dict:
    """Paths in a config file are relative to the file, so a config works from any working directory."""
    for keys in _PATHS:
        holder = data
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder.get(key), dict) else {}
        if isinstance(holder.get(keys[-1]), str):
            holder[keys[-1]] = str((root / holder[keys[-1]]).expanduser())
    return data


def load_settings(config_file: Path | None = None, overrides: dict | None = None) -> Settings:
    data: dict = {}
    source = "defaults"
    if config_file is not None:
        source = str(config_file)
        try:
            data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config_file}: no such config file. Fix: check the --config path.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML ({exc}). Fix: correct the file.") from None
        data = _resolve_paths(data, Path(config_file).resolve().parent)
    env = EnvSettingsSource(Settings, env_prefix="CLASSIE_", env_nested_delimiter="__")()
    merged = _merge(_merge(data, env), overrides or {})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"configuration ({source}, CLASSIE_* environment, flags): {problems}") from None


SECRETS = ("KILI_API_KEY", "LABEL_STUDIO_API_KEY", "CLASSIE_API_TOKEN")


def load_secret_files(environ: dict | None = None) -> list[str]:
    """Docker/Kubernetes secrets: NAME_FILE names a mounted file holding NAME (e.g. /run/secrets/kili_api_key).
    A value set directly in NAME wins. Returns the names read from files; their values are never logged."""
    env = os.environ if environ is None else environ
    loaded = []
    for name in SECRETS:
        path = env.get(f"{name}_FILE")
        if not path or env.get(name):
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror}). Fix: mount the secret there"
                              f" or set {name} instead.") from None
        if not value:
            raise ConfigError(f"{name}_FILE={path} is empty. Fix: put the secret in the file.")
        env[name] = value
        loaded.append(name)
    return loaded
