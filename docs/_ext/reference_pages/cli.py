"""The command-line reference: every command of the Typer app, walked in the command tree Typer builds from it
(`typer.main.get_command`), with its help, its arguments and options, their types, defaults and variables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePath
from typing import Any

from reference_pages.markdown import code, definition, heading, inline, paragraphs

__all__ = ["PROGRAM", "commands", "page"]

PROGRAM = "classie-automl"  # the console script (pyproject.toml [project.scripts]) the service's CLI runs as


def commands(root: Any = None) -> Iterator[tuple[list[str], Any, Any]]:
    """(path of names, command, its context) for the root command and every command below it, in the order of the
    app's own help."""
    import typer.main

    from service.app.cli import app

    root = typer.main.get_command(app) if root is None else root
    stack: list[tuple[list[str], Any, Any]] = [([], root, root.make_context(PROGRAM, [], resilient_parsing=True))]
    while stack:
        path, command, ctx = stack.pop(0)
        yield path, command, ctx
        below = getattr(command, "commands", None) or {}
        for name in command.list_commands(ctx) if below else []:
            sub = command.get_command(ctx, name)
            stack.append(([*path, name], sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True)))


def _default(value: object) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, PurePath):
        value = str(value)
    return code(repr(value) if isinstance(value, str) else value)


def _bounds(param: Any) -> str:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    return ", ".join(part for part in (f"≥ {low}" if low is not None else "",
                                        f"≤ {high}" if high is not None else "") if part)


def _params(command: Any, ctx: Any) -> str:
    """Each option as the command's --help names it (`--budget <int>`, `-v, --verbose`), with its help, its
    default, its bounds and its variable."""
    help_names = set(command.get_help_option_names(ctx))
    items = []
    for param in command.get_params(ctx):
        if help_names & {*param.opts, *param.secondary_opts} or getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        term = record[0] if record else " ".join(param.opts)
        facts = ["Required" if param.required else "Default " + _default(param.default)]
        facts += ["bounds " + _bounds(param)] if _bounds(param) else []
        envvar = param.envvar if isinstance(param.envvar, str) else ", ".join(param.envvar or ())
        facts += ["variable " + code(envvar)] if envvar else []
        kind = " (argument)" if param.param_type_name == "argument" else ""
        items.append(definition(code(term) + kind, " ".join(filter(None, [
            inline(getattr(param, "help", None) or ""), "; ".join(facts) + "."]))))
    return "\n\n".join(items) if items else "No options."


def page() -> str:
    parts = [heading(1, "Command line", "reference-cli"),
             f"Generated from the code at each build: every command of {code(PROGRAM)} (`service/app/cli.py`), with"
             " its options as its `--help` names them. An option left unset leaves the setting behind it to the"
             " configuration (see [settings](settings.md)); an option's variable is read when the option is not"
             " given."]
    for path, command, ctx in commands():
        if not path:
            parts.append(paragraphs(command.help or ""))
            help_options = ", ".join(code(n) for n in command.get_help_option_names(ctx))
            parts.append(f"Every command takes {help_options} (its help, then exit 0). Usage:"
                         f" {code(PROGRAM + ' COMMAND [OPTIONS]')}.")
            continue
        name = " ".join(path)
        parts.append(heading(2, code(f"{PROGRAM} {name}"), "cli-" + "-".join(path)))
        parts.append(paragraphs(command.help or ""))
        parts.append(_params(command, ctx))
    return "\n\n".join(parts) + "\n"
