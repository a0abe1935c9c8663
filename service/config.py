"""Configuration: a TOML file, then environment variables (CLASSIE_SECTION__KEY), then command-line flags; and the
secrets, which come from the environment only.

Each section is declared once, by the layer that uses it (`automl.settings`, `connectors.settings`, and the
service's own sections below), and is passed down as it is.
"""

from __future__ import annotations

import difflib
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from automl.errors import InputError
from automl.settings import ComputeSettings, ModelSettings, Section, TaxonomySettings
from connectors.settings import FilesSettings, KiliSettings, LabelStudioSettings, SecuritySettings

if TYPE_CHECKING:  # the search's module loads auto-sklearn: only when a training runs
    from automl.search import Workspace

__all__ = ["ApiSettings", "ConfigError", "EvaluationSettings", "LabelIssueSettings", "Secrets", "Settings",
           "WorkerSettings", "flag_overrides", "load_settings", "read_secrets"]

log = logging.getLogger(__name__)


class ConfigError(InputError):
    """The configuration cannot be used; the message names the setting, where it came from, and the fix."""


class WorkerSettings(Section):
    interval_seconds: float = Field(60.0, gt=0)  # the wait between two cycles of the polling worker (`run`)
    batch_size: int = Field(500, ge=1)  # assets predicted and pushed together
    # Retrain when at least this many labelled assets were added, changed or removed since the current model...
    retrain_min_changes: int = Field(1, ge=1)
    # ...and they are at least this fraction of the labelled assets the current model was trained on.
    retrain_min_fraction: float = Field(0.0, ge=0, le=10)
    # A pull that leaves fewer labelled assets than (1 - this) of what the current model was trained on trains and
    # pushes nothing (a wrong taxonomy or label column, more likely than labels deleted); 1 turns the check off.
    max_label_loss: float = Field(0.5, gt=0, le=1)
    # Incremental pulls between complete ones; a complete pull also notices assets deleted on the platform.
    full_pull_seconds: float = Field(3600.0, ge=0)
    # An incremental pull starts this long before the newest change the last one saw: a change that was stamped
    # earlier but committed later (a slow write, clocks apart) is not missed.
    cursor_overlap_seconds: float = Field(10.0, ge=0)
    # `classie-automl health` calls the worker stuck when its heartbeat is older than this (it beats at every page
    # pulled, training poll, batch pushed, and every 30 s while waiting).
    stale_after_seconds: float = Field(600.0, gt=0)
    # The polling worker's own Prometheus endpoint (`run` without --once); off unless a port is given. Loopback by
    # default: the metrics carry no secret, but nothing should listen on the network unasked (the image sets 0.0.0.0).
    metrics_port: int | None = Field(None, gt=0, lt=65536)
    metrics_host: str = Field("127.0.0.1", min_length=1)  # the address metrics_port listens on

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        # An environment cannot unset a variable the Docker image sets: CLASSIE_WORKER__METRICS_PORT= turns it off.
        return None if isinstance(value, str) and not value.strip() else value


class ApiSettings(Section):
    debounce_seconds: float = Field(10.0, ge=0)  # webhook events within this quiet time make one cycle
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)  # a larger request body is refused (413)
    max_tasks: int = Field(1000, ge=1)  # tasks in one /predict call; more are refused (413)
    text_key: str = "text"  # the task data field read when a /predict call brings no label_config


class EvaluationSettings(Section):
    test: Path | None = None  # a labelled assets file; `run --once` then reports quality against it


class LabelIssueSettings(Section):
    """Every training lists the likely mistakes in the human labels it learned from (`classie-automl label-issues`).
    With `push`, the worker also shows the `top` most likely of the serving version where the labellers look: a Kili
    issue on the label, a note in the Label Studio task's data, label_issues.csv beside the files output."""

    push: bool = False  # show the likely label mistakes on the platform
    top: int = Field(100, ge=1)  # of each version's list, most likely first


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLASSIE_", env_nested_delimiter="__", extra="forbid", frozen=True)

    platform: Literal["files", "kili", "label-studio"] = "files"  # where the assets are and the pre-annotations go
    state_dir: Path = Path("state")  # models/, preannotations.jsonl (files), logs/, tmp/
    files: FilesSettings = Field(default_factory=FilesSettings)
    kili: KiliSettings = Field(default_factory=KiliSettings)
    label_studio: LabelStudioSettings = Field(default_factory=LabelStudioSettings)
    taxonomy: TaxonomySettings = Field(default_factory=TaxonomySettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    label_issues: LabelIssueSettings = Field(default_factory=LabelIssueSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)

    def workspace(self) -> Workspace:
        """Where a training's searches write (the state folder's tmp/ and logs/) and run."""
        from automl.search import Workspace

        return Workspace(self.state_dir / "tmp", self.state_dir / "logs" / "autosklearn.log", self.compute.scheduler,
                         self.compute.connect_seconds)

    @property
    def output_path(self) -> Path:
        return self.files.output or self.state_dir / "preannotations.jsonl"


# Paths in a config file are relative to the file, so that a config works from any working directory.
_PATHS = (("state_dir",), ("files", "assets"), ("files", "output"), ("taxonomy", "path"), ("evaluation", "test"))
# Command-line flags and the settings they set.
FLAGS = {"platform": ("platform",), "state": ("state_dir",), "assets": ("files", "assets"),
         "output": ("files", "output"), "taxonomy": ("taxonomy", "path"), "budget": ("model", "budget_seconds"),
         "url": ("label_studio", "url")}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _nested(keys: tuple[str, ...], value: Any) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def _resolve_paths(data: dict, root: Path) -> dict:
    for keys in _PATHS:
        holder = data
        for key in keys[:-1]:
            child = holder.get(key)
            holder = child if isinstance(child, dict) else {}
        if isinstance(holder.get(keys[-1]), str):
            holder[keys[-1]] = str((root / holder[keys[-1]]).expanduser())
    return data


def _read_file(config_file: Path) -> dict:
    try:
        data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_file}: no such config file. Fix: check the --config path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{config_file} is a folder, not a config file. Fix: give the TOML file in it,"
                          " e.g. --config examples/ukcat/config.toml.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{config_file}: not UTF-8 text (byte {exc.start}: {exc.reason}). Fix: save the file as"
                          " UTF-8, as TOML requires.") from None
    except OSError as exc:
        raise ConfigError(f"{config_file}: cannot read it ({exc.strerror}). Fix: check the path and its"
                          " permissions.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file}: not valid TOML ({exc}). Fix: correct the file.") from None
    return _resolve_paths(data, Path(config_file).resolve().parent)


# CLASSIE_* variables that are not settings: the API's token (read as a secret), logging (service.app.logs), the
# health probe's URL (service.app.health), the CLI's --config default, and the set-up scripts' and tests' own.
NOT_SETTINGS = frozenset({"CLASSIE_API_TOKEN", "CLASSIE_API_TOKEN_FILE", "CLASSIE_LOG_FORMAT", "CLASSIE_LOG_LEVEL",
                          "CLASSIE_HEALTH_URL", "CLASSIE_CONFIG", "CLASSIE_VENV", "CLASSIE_EXTRAS", "CLASSIE_LS_VENV",
                          "CLASSIE_BUILD_JOBS"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """CLASSIE_* variables that name no setting: pydantic-settings ignores them, so a typo would change nothing
    without a word. Each comes with the fix (the closest name when there is one)."""
    known = sorted(name.upper() for name in Settings.model_fields)
    problems = []
    for name in sorted(n for n in environ if n.startswith("CLASSIE_") and n not in NOT_SETTINGS):
        rest = name[len("CLASSIE_"):]
        top, _, inner = rest.partition("__")
        if top in known:
            continue
        section = next((k for k in known if top.startswith(k + "_")), None)  # one underscore where two belong
        close = difflib.get_close_matches(top, known, n=1)
        if section:
            hint = f"did you mean CLASSIE_{section}__{rest[len(section) + 1:]}?"
        elif close:
            hint = f"did you mean CLASSIE_{close[0]}{'__' + inner if inner else ''}?"
        else:
            hint = f"the sections and settings are {', '.join(known)}"
        problems.append(f"{name} is not a setting and is ignored. Fix: {hint}")
    return problems


def _environment() -> dict:
    """The CLASSIE_* variables, nested by `__` (a dict or list value is JSON)."""
    for problem in unknown_variables(os.environ):
        log.warning("%s", problem)
    try:
        return EnvSettingsSource(Settings, env_prefix="CLASSIE_", env_nested_delimiter="__")()
    except SettingsError as exc:
        names = sorted(n for n in os.environ if n.startswith("CLASSIE_") and n != "CLASSIE_API_TOKEN")
        raise ConfigError(f"the CLASSIE_* environment: {exc} (set: {', '.join(names) or 'none'}). Fix: give that"
                          ' value as JSON, e.g. CLASSIE_TAXONOMY__FACET_ROOTS=\'{"population": ["BE"]}\'.') from None


def _platform_environment(environ: Mapping[str, str]) -> dict:
    """The platforms' own variables, used where no setting says otherwise."""
    found: dict = {}
    if environ.get("LABEL_STUDIO_URL"):
        found["label_studio"] = {"url": environ.get("LABEL_STUDIO_URL")}
    if environ.get("KILI_API_ENDPOINT"):
        found["kili"] = {"endpoint": environ.get("KILI_API_ENDPOINT")}
    return found


def _with_project_id(merged: dict, project_id: str) -> dict:
    """--project-id belongs to the platform the configuration names (flag, file or environment)."""
    if merged.get("platform") == "label-studio":
        if not project_id.isdigit():
            raise ConfigError(f"--project-id {project_id!r}: Label Studio project ids are numbers.")
        return _merge(merged, {"label_studio": {"project_id": int(project_id)}})
    return _merge(merged, {"kili": {"project_id": project_id}})


def load_settings(config_file: Path | None = None, overrides: dict | None = None,
                  project_id: str | None = None) -> Settings:
    """The settings from `config_file`, the CLASSIE_* environment and `overrides` (each wins over the one before),
    over the defaults and the platforms' own LABEL_STUDIO_URL and KILI_API_ENDPOINT."""
    data = _read_file(config_file) if config_file is not None else {}
    env = _environment()
    merged = _merge(_merge(_merge(_platform_environment(os.environ), data), env), overrides or {})
    if project_id:
        merged = _with_project_id(merged, project_id)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        source = str(config_file) if config_file is not None else "defaults"
        raise ConfigError(f"configuration ({source}, CLASSIE_* environment, flags): {problems}. Fix: correct"
                          " that setting (the README's Configuration lists each one with its default).") from None


def flag_overrides(**flags: Any) -> dict:
    """The settings that command-line flags set (a flag left out or None sets nothing)."""
    out: dict = {}
    for name, value in flags.items():
        if value is not None:
            out = _merge(out, _nested(FLAGS[name], str(value) if isinstance(value, Path) else value))
    return out


# ---- secrets ----------------------------------------------------------------------------------------------------

SECRETS = ("KILI_API_KEY", "LABEL_STUDIO_API_KEY", "CLASSIE_API_TOKEN")


class Secrets(BaseModel):
    """Read once, at the edge, and handed to what needs them; never logged, never in a repr."""

    model_config = ConfigDict(frozen=True)

    kili_api_key: SecretStr | None = None
    label_studio_api_key: SecretStr | None = None
    classie_api_token: SecretStr | None = None


def read_secrets(environ: Mapping[str, str] = os.environ) -> Secrets:
    """Each secret from its variable, else from the file its NAME_FILE variable names (Docker or Kubernetes
    secrets, e.g. /run/secrets/kili_api_key). The variable wins when both are set."""
    values = {}
    for name in SECRETS:
        value = environ.get(name) or _secret_file(name, environ.get(f"{name}_FILE"))
        values[name.lower()] = SecretStr(value) if value else None
    return Secrets(**values)


def _secret_file(name: str, path: str | None) -> str | None:
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror}). Fix: mount the secret there"
                          f" or set {name} instead.") from None
    if not value:
        raise ConfigError(f"{name}_FILE={path} is empty. Fix: put the secret in the file.")
    return value
