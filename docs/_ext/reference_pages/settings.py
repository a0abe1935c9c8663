"""The settings reference: every field of the pydantic settings (service.config.Settings and the sections it
composes) with its TOML place, its environment variable, type, default, bounds and the comments the code gives it;
then the other variables the service reads (secrets and their file forms, logging, the platforms' own), found in
the code, and those the Docker image sets."""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from reference_pages.markdown import code, definition, first_sentence, heading, inline, paragraphs, table
from reference_pages.source import (
    PACKAGES,
    ROOT,
    EnvRead,
    env_reads,
    field_comments,
    function_comment,
    modules,
    name_comment,
    sentence_naming,
    text_of,
)

__all__ = ["Setting", "dockerfile_env", "page", "section_tables", "settings_of", "type_name"]

_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("min_length", "length ≥"),
           ("max_length", "length ≤"), ("multiple_of", "a multiple of"))


@dataclass(frozen=True)
class Setting:
    """One field of a settings model, as the page shows it."""

    section: str  # "" at the top level
    key: str
    variable: str
    field: FieldInfo
    owner: type[BaseModel]

    @property
    def place(self) -> str:
        return f"[{self.section}] {self.key}" if self.section else self.key


def _section(annotation: Any) -> type[BaseModel] | None:
    """The model a field's type is, when it is one: a section of the settings."""
    return annotation if inspect.isclass(annotation) and issubclass(annotation, BaseModel) else None


def settings_of(settings_cls: type[BaseModel]) -> Iterator[Setting]:
    """Every setting of `settings_cls` (a pydantic-settings class): its own fields at the top level of the TOML
    file, then each section's (a field whose type is a model), named as its environment source names them."""
    config = settings_cls.model_config
    prefix, nested = str(config.get("env_prefix", "")), str(config.get("env_nested_delimiter") or "__")
    for name, field in settings_cls.model_fields.items():
        if _section(field.annotation) is None:
            yield Setting("", name, (prefix + name).upper(), field, settings_cls)
    for name, field in settings_cls.model_fields.items():
        section = _section(field.annotation)
        if section is not None:
            for key, inner in section.model_fields.items():
                yield Setting(name, key, (prefix + name + nested + key).upper(), inner, section)


def type_name(annotation: Any) -> str:
    """A type as a reader of the TOML file thinks of it: `int`, `float | unset`, `path`, `list of str`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "unset"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        items = [a for a in args if a is not Ellipsis]
        return "list of " + (type_name(items[0]) if items else "values")
    if origin is dict:
        return f"table of {type_name(args[0])} to {type_name(args[1])}" if args else "table"
    if inspect.isclass(annotation) and issubclass(annotation, PurePath):
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _is_complex(annotation: Any) -> bool:
    """A value pydantic-settings reads from its variable as JSON (a list, a table)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_complex(a) for a in typing.get_args(annotation))
    return typing.get_origin(annotation) in (list, tuple, set, frozenset, dict)


def toml_value(value: Any) -> str:
    """A default as it would be written in the TOML file; None (TOML has no null) is "unset"."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, str | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def bounds(field: FieldInfo) -> str:
    """ge/gt/le/lt, lengths and patterns, as the field's constraints declare them."""
    out = []
    for item in field.metadata:
        for attr, sign in _BOUNDS:
            if getattr(item, attr, None) is not None:
                out.append(f"{sign} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            out.append(f"matches {code(item.pattern)}")
    return ", ".join(out)


def _learning_marker() -> dict:
    from automl.settings import learning

    return learning(None).json_schema_extra  # what automl.settings marks a field that changes what is learned


def _retrains(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and all(extra.get(k) == v for k, v in _learning_marker().items())


def _validator_notes(owner: type[BaseModel], key: str) -> list[str]:
    """What the field's own validators say of themselves (docstring or first comments)."""
    notes = []
    for decorator in owner.__pydantic_decorators__.field_validators.values():
        if key in decorator.info.fields:
            note = function_comment(decorator.func)
            if note:
                notes.append(note)
    return notes


def _description(setting: Setting, comments: dict[str, str], extra: list[str]) -> str:
    said = [setting.field.description or comments.get(setting.key, ""), *_validator_notes(setting.owner, setting.key),
            *extra]
    return " ".join(_sentence(s) for s in said if s)


def _sentence(text: str) -> str:
    """`text` as a sentence of the page: escaped, with a full stop at its end."""
    text = " ".join(text.split())
    return inline(text if text.endswith((".", "!", "?", ":", "...")) else text + ".")


def section_tables(settings_cls: type[BaseModel], flags: Mapping[tuple[str, ...], str] | None = None,
                   fallbacks: Mapping[tuple[str, ...], str] | None = None,
                   relative: tuple[tuple[str, ...], ...] = ()) -> str:
    """Markdown: a heading per section of `settings_cls` (the top level first), and each of its settings. `flags`:
    the command-line option that sets a setting (by its path); `fallbacks`: a variable read when the setting is
    unset; `relative`: the path settings that a config file gives relative to itself."""
    flags, fallbacks = flags or {}, fallbacks or {}
    by_section: dict[str, list[Setting]] = {}
    for setting in settings_of(settings_cls):
        by_section.setdefault(setting.section, []).append(setting)
    parts = []
    for section, found in by_section.items():
        owner = found[0].owner
        own_doc = owner.__dict__.get("__doc__") if section else None
        title = code(f"[{section}]") if section else "Top level"
        parts.append(heading(2, title, f"settings-{section.replace('_', '-') or 'top-level'}"))
        if own_doc:
            parts.append(paragraphs(inspect.cleandoc(own_doc)))
        comments = field_comments(owner)
        for s in found:
            path = (s.section, s.key) if s.section else (s.key,)
            extra = ["A relative path in a config file is relative to the file."] if path in relative else []
            parts.append(definition(code(s.key), _description(s, comments, extra),
                                    _facts(s, flags.get(path), fallbacks.get(path))))
    return "\n\n".join(parts)


def _facts(s: Setting, flag: str | None, fallback: str | None) -> str:
    """Type, default, bounds; the variable (and the one read when it is unset), the flag; whether it retrains."""
    kind = type_name(s.field.annotation) + (" (JSON in the variable)" if _is_complex(s.field.annotation) else "")
    default = s.field.get_default(call_default_factory=True)
    facts = [inline(kind), "default " + ("unset" if default is None else code(toml_value(default)))]
    facts += [bounds(s.field)] if bounds(s.field) else []
    said = "; ".join(facts) + ". Variable " + code(s.variable)
    said += f", else {code(fallback)}" if fallback else ""
    said += f". Flag {code(flag)}" if flag else ""
    return said + (". **Retrains.**" if _retrains(s.field) else ".")


def _flags() -> dict[tuple[str, ...], str]:
    """Setting path -> the option that sets it, as service.config.FLAGS maps option names to settings."""
    from reference_pages.cli import commands
    from service.config import FLAGS

    options = {p.name: p.opts[0] for _, command, ctx in commands() for p in command.get_params(ctx)}
    return {path: options[name] for name, path in FLAGS.items() if name in options}


def _all_env_reads() -> list[EnvRead]:
    return [read for package in PACKAGES for path in modules(package) for read in env_reads(path)]


def _fallbacks(reads: list[EnvRead]) -> dict[tuple[str, ...], str]:
    """Setting path -> the platform's own variable that service.config uses when the setting is unset: each name
    its `_platform_environment` reads, given to it to see which setting it fills."""
    from service import config

    names = {r.name for r in reads if r.module == config.__name__ and r.function == "_platform_environment"}
    out: dict[tuple[str, ...], str] = {}
    for name in names:
        marker = f"<{name}>"
        found = config._platform_environment({name: marker})
        for section, values in found.items():
            for key, value in values.items():
                if value == marker:
                    out[(section, key)] = name
    return out


def dockerfile_env(dockerfile: Path = ROOT / "docker" / "Dockerfile") -> dict[str, str]:
    """The ENV of the Dockerfile's last stage (the image that runs), NAME -> value."""
    text = re.sub(r"\\\n", " ", text_of(dockerfile))
    stages = re.split(r"^FROM\s", text, flags=re.MULTILINE)
    found: dict[str, str] = {}
    for line in stages[-1].splitlines():
        if line.startswith("ENV "):
            found.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|\S*)", line[4:]))
    return {k: v.strip('"') for k, v in found.items()}


def _secrets() -> str:
    from service import config

    rows = [[code(name), code(f"{name}_FILE"), code(f"Secrets.{name.lower()}")] for name in config.SECRETS]
    return "\n\n".join([heading(2, "Secrets", "settings-secrets"),
                        paragraphs(inspect.getdoc(config.read_secrets) or ""),
                        paragraphs(inspect.getdoc(config.Secrets) or ""),
                        table(["Variable", "Or the file named by", "Held as"], rows)])


def _users_outside(name: str) -> list[str]:
    """Files outside the packages that mention `name`: the set-up scripts, the entry points, the tests."""
    places = [ROOT / "dev", *(ROOT / "scripts").glob("*"), *(ROOT / "tests").glob("*.py"),
              *(ROOT / "docker").glob("*")]
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    return sorted(str(p.relative_to(ROOT)) for p in places if p.is_file() and pattern.search(text_of(p)))


def _other_variables(reads: list[EnvRead], fallbacks: Mapping[tuple[str, ...], str]) -> str:
    from service import config

    secret_names = {*config.SECRETS, *(f"{n}_FILE" for n in config.SECRETS)}
    by_name: dict[str, list[EnvRead]] = {}
    for read in reads:
        if read.name not in secret_names:
            by_name.setdefault(read.name, []).append(read)
    filled = {name: f"[{path[0]}] {path[1]}" for path, name in fallbacks.items()}
    rows = []
    for name in sorted(by_name | dict.fromkeys(config.NOT_SETTINGS - secret_names, [])):
        found = by_name.get(name, [])
        readers = sorted({f"{r.module}.{r.function}" if r.function else r.module for r in found})
        defaults = sorted({r.default for r in found if r.default is not None})
        what = [_what(r) for r in found]
        if name in filled:
            what.insert(0, f"Used for {filled[name]} when that is unset.")
        if not found:
            what = ["Not read by the service: used by " + ", ".join(_users_outside(name)) + "."]
        rows.append([code(name), ", ".join(code(r) for r in readers), ", ".join(code(json.dumps(d)) for d in defaults),
                     " ".join(dict.fromkeys(_sentence(w) for w in what if w))])
    return "\n\n".join([heading(2, "Other variables", "settings-other-variables"),
                        "Every other variable the code reads (found in `automl/`, `connectors/` and `service/`), and"
                        " the `CLASSIE_*` names that `service.config.NOT_SETTINGS` sets apart from the settings: "
                        + inline(name_comment(Path(config.__file__), "NOT_SETTINGS")),
                        table(["Variable", "Read by", "Default", "What"], rows)])


def _what(read: EnvRead) -> str:
    """What the code says of a variable where it reads it: the comment there, else the sentence of the reading
    function's or module's docstring that names it, else that docstring's first sentence; an option's help."""
    if read.how == "option":
        option = _option_of(read.name)
        return f"The option {code(option.opts[0])}: {option.help}"
    if read.how == "set when unset":
        return f"Set by the service when unset: {read.comment}" if read.comment else "Set by the service when unset."
    function = _function(read)
    docs = [function_comment(function) if function is not _module(read) else "", inspect.getdoc(_module(read)) or ""]
    return read.comment or next((s for s in (sentence_naming(d, read.name) for d in docs) if s), "") or next(
        (first_sentence(d) for d in docs if d), "")


def _module(read: EnvRead) -> object:
    import importlib

    return importlib.import_module(read.module)


def _function(read: EnvRead) -> object:
    """The function (or the module) that reads the variable, imported."""
    import importlib

    module = importlib.import_module(read.module)
    return getattr(module, read.function, module) if read.function else module


def _option_of(variable: str) -> Any:
    from reference_pages.cli import commands

    return next(p for _, command, ctx in commands() for p in command.get_params(ctx) if p.envvar == variable)


def _image() -> str:
    rows = [[code(name), code(value)] for name, value in dockerfile_env().items()]
    return "\n\n".join([heading(2, "Set by the Docker image", "settings-image"),
                        "The image (`docker/Dockerfile`, its last stage) sets these; a container's own environment"
                        " wins.", table(["Variable", "Value"], rows)])


def page() -> str:
    from service import config

    reads = _all_env_reads()
    fallbacks = _fallbacks(reads)
    model_config = config.Settings.model_config
    intro = (f"Generated from the code at each build (`service/config.py` and the sections it composes). Every"
             f" setting is a key of the TOML file (`--config`), in its section, and an environment variable:"
             f" {code(model_config.get('env_prefix', ''))} then the section and the key, joined by"
             f" {code(model_config.get('env_nested_delimiter'))}, in capitals. Variables win over the file, and"
             f" command-line flags over both. A list or a table is given to its variable as JSON; \"unset\" is no"
             f" value (the key left out). A setting marked **Retrains** changes what a model learns: changing it"
             f" trains a new version at the next cycle.")
    return "\n\n".join([
        heading(1, "Settings", "reference-settings"), intro, paragraphs(inspect.getdoc(config) or ""),
        inline(first_sentence(inspect.getdoc(config.unknown_variables))) + " (`service.config.unknown_variables`)",
        section_tables(config.Settings, _flags(), fallbacks, getattr(config, "_PATHS", ())),
        _secrets(), _other_variables(reads, fallbacks), _image()]) + "\n"
