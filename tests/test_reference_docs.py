"""The reference pages generated from the code (docs/_ext/reference_pages): each names everything the code holds,
read here again from the code by other means (the CLI's command tree, the settings models, the API's routes and
answers, a scrape of the metrics, the live error classes); a setting or metric added to the code would appear; and
the site builds with warnings as errors."""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from automl.settings import learning
from conftest import ROOT

sys.path.insert(0, str(ROOT / "docs" / "_ext"))  # the generator lives beside the Sphinx extension that runs it

import reference_pages  # noqa: E402
from reference_pages import cli as cli_page  # noqa: E402
from reference_pages import exit_codes, file_formats, http_api, markdown, metrics, settings, source  # noqa: E402

PAGES, write_pages = reference_pages.PAGES, reference_pages.write_pages


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {name: make() for name, make in PAGES.items()}


def _items(page: str) -> dict[tuple[str, str], str]:
    """(section heading, term) -> the definition's text, for every definition-list item of a page."""
    out, section = {}, ""
    for block in re.split(r"\n(?=\(|#|`[^`\n]+`[^\n]*\n: )", page):
        if block.startswith("#"):
            section = block.splitlines()[0].lstrip("# ").strip()
        match = re.match(r"(`[^`\n]+`[^\n]*)\n: (.*)", block, re.DOTALL)
        if match:
            out[(section, match.group(1))] = " ".join(match.group(2).split())
    return out


# ---- the command line -----------------------------------------------------------------------------------------

def test_the_cli_page_names_every_command_and_every_option_with_its_variable(pages):
    import typer.main

    from service.app.cli import app

    root: Any = typer.main.get_command(app)
    page = pages["cli"]
    items = _items(page)
    assert root.commands, "the walk found no command"
    for name, command in root.commands.items():
        title = f"`{cli_page.PROGRAM} {name}`"
        assert f"## {title}" in page, f"command {name} has no section"
        own = {term: text for (section, term), text in items.items() if section == title}
        for param in command.params:
            term = next((t for t in own if param.opts[0] in t), None)
            assert term is not None, f"{name}: option {param.opts[0]} is missing"
            if param.envvar:
                assert f"variable `{param.envvar}`" in own[term]
            if param.required:
                assert "Required" in own[term]


def test_the_program_name_is_the_console_script_that_runs_the_cli():
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[cli_page.PROGRAM] == "service.app.cli:main"


# ---- settings -------------------------------------------------------------------------------------------------

def test_the_settings_page_names_every_setting_with_its_variable_and_real_default(pages):
    from service.config import Settings

    items = _items(pages["settings"])
    checked = 0
    for name, field in Settings.model_fields.items():
        section = field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel) \
            else None
        fields = section.model_fields.items() if section else [(name, field)]
        for key, inner in fields:
            variable = f"CLASSIE_{name}__{key}".upper() if section else f"CLASSIE_{key}".upper()
            title = f"`[{name}]`" if section else "Top level"
            text = items.get((title, f"`{key}`"))
            assert text is not None, f"{title} {key} is not on the page"
            assert f"Variable `{variable}`" in text
            default = inner.get_default(call_default_factory=True)
            if default is None:
                assert "default unset" in text
            elif isinstance(default, bool | int | float | str):
                assert f"default `{json.dumps(default)}`" in text, (key, text)
            checked += 1
    assert checked > 50


def test_defaults_and_bounds_as_the_models_declare_them(pages):
    from automl.settings import ModelSettings
    from service.config import ApiSettings, WorkerSettings

    items = _items(pages["settings"])
    budget = items[("`[model]`", "`budget_seconds`")]
    assert f"default `{ModelSettings().budget_seconds}`" in budget and "≥ 1" in budget and "Flag `--budget`" in budget
    assert "> 0, ≤ 1" in items[("`[model]`", "`max_df`")] and "**Retrains.**" in items[("`[model]`", "`max_df`")]
    assert "**Retrains.**" not in budget
    assert f"default `{ApiSettings().max_body_bytes}`" in items[("`[api]`", "`max_body_bytes`")]
    assert f'default `"{WorkerSettings().metrics_host}"`' in items[("`[worker]`", "`metrics_host`")]
    hierarchy = items[("`[model]`", "`hierarchy`")]
    assert 'one of "imply_parents", "require_parent"' in hierarchy.replace("\\", "")
    # the platform's own variable, read when the setting is unset
    assert "else `LABEL_STUDIO_URL`" in items[("`[label_studio]`", "`url`")]
    # a validator's own comment
    assert "CLASSIE\\_WORKER\\_\\_METRICS\\_PORT= turns it off" in items[("`[worker]`", "`metrics_port`")]


class DemoAlpha(BaseModel):
    """The alpha section."""

    limit: int = learning(7, ge=2)  # how far alpha goes
    # what mode alpha is in
    mode: Literal["fast", "slow"] = "fast"
    optional: float | None = Field(None, gt=0, lt=1)


class DemoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_", env_nested_delimiter="__")

    top: str = "x"
    alpha: DemoAlpha = Field(default_factory=DemoAlpha)


def test_a_setting_added_to_a_model_appears_with_everything_it_declares():
    items = _items(settings.section_tables(DemoSettings))
    limit = items[("`[alpha]`", "`limit`")]
    assert "Variable `DEMO_ALPHA__LIMIT`" in limit and "default `7`" in limit and "≥ 2" in limit
    assert "how far alpha goes" in limit and "**Retrains.**" in limit
    assert 'one of "fast", "slow"' in items[("`[alpha]`", "`mode`")]
    assert "what mode alpha is in" in items[("`[alpha]`", "`mode`")]
    optional = items[("`[alpha]`", "`optional`")]
    assert "float | unset" in optional.replace("\\", "") and "default unset" in optional and "> 0, < 1" in optional
    assert "Variable `DEMO_TOP`" in items[("Top level", "`top`")]


def test_every_variable_the_service_reads_is_on_the_settings_page(pages):
    from service.config import NOT_SETTINGS, SECRETS

    page = pages["settings"]
    names = {*SECRETS, *(f"{n}_FILE" for n in SECRETS), *NOT_SETTINGS, "LABEL_STUDIO_URL", "KILI_API_ENDPOINT"}
    for name in names:
        assert f"`{name}`" in page, name
    assert "`CLASSIE_STATE_DIR` | `/var/lib/classie`" in page  # the image's own


def test_the_variable_scan_finds_each_way_of_reading_one(tmp_path):
    module = tmp_path / "reads.py"
    module.write_text('import os\n\n\ndef f(environ):\n    # the comment\n    return environ.get("A_ONE", "d")\n\n\n'
                      'B = os.environ["B_TWO"]\nC = os.getenv("C_THREE")\nos.environ.setdefault("D_FOUR", "x")\n',
                      encoding="utf-8")
    found = {r.name: r for r in source.env_reads(module, tmp_path)}
    assert set(found) == {"A_ONE", "B_TWO", "C_THREE", "D_FOUR"}
    assert (found["A_ONE"].function, found["A_ONE"].default, found["A_ONE"].comment) == ("f", "d", "the comment")
    assert found["D_FOUR"].how == "set when unset"


# ---- the HTTP API ---------------------------------------------------------------------------------------------

def test_the_api_page_names_every_openapi_path_and_method(pages):
    page = pages["http-api"]
    with http_api.built_app() as app:
        paths = app.openapi()["paths"]
    assert paths
    for path, operations in paths.items():
        for method in operations:
            assert f"## `{method.upper()} {path}`" in page, (method, path)


def test_the_auth_rule_on_the_page_is_what_the_app_does(pages):
    from fastapi.testclient import TestClient

    page = pages["http-api"]
    with http_api.built_app() as app:
        client = TestClient(app)
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Bearer {http_api.TOKEN}"}).status_code == 200
        assert client.get("/metrics", auth=("anyone", http_api.TOKEN)).status_code == 200
        for route in app.routes:
            method = sorted(route.methods - {"HEAD"})[0]
            guarded = client.request(method, route.path).status_code == 401
            section = page.split(f"## `{method} {route.path}`")[1].split("\n## ")[0]
            assert ("**Token:** needed." in section) is guarded, route.path
    assert "`Authorization: Bearer <token>`" in page and "token as the password" in page


def test_every_status_the_api_code_raises_is_on_the_page(pages):
    text = (ROOT / "service" / "app" / "api.py").read_text(encoding="utf-8")
    raised = {int(n) for n in re.findall(r"HTTPException\((\d{3})", text)}
    raised |= {int(n) for n in re.findall(r"status_code=(\d{3})", text)}
    assert raised
    for status in raised:
        assert f"| `{status}` |" in pages["http-api"], status


# ---- metrics --------------------------------------------------------------------------------------------------

def test_the_metrics_page_names_every_metric_a_scrape_shows(pages):
    from prometheus_client import generate_latest

    from service.app.api import Metrics
    from service.app.metrics import WorkerMetrics

    assert {h.__name__ for h in metrics.holders()} == {"Metrics", "WorkerMetrics"}
    names = set()
    for holder in (Metrics(), WorkerMetrics()):
        scrape = generate_latest(holder.registry).decode()
        names |= {n for n in re.findall(r"^# TYPE (\S+) ", scrape, re.MULTILINE) if not n.endswith("_created")}
    assert len(names) > 20
    for name in names:
        assert f"`{name}` (" in pages["metrics"], name


def test_every_metric_name_written_in_the_code_is_on_the_page(pages):
    for package in source.PACKAGES:
        for path in source.modules(package):
            for node in ast.walk(source.parse(path)):
                if isinstance(node, ast.Call) and ast.unparse(node.func) in ("Counter", "Gauge", "Histogram") \
                        and node.args and isinstance(node.args[0], ast.Constant):
                    assert f"`{node.args[0].value!s}" in pages["metrics"], (path, node.args[0].value)


def test_a_metric_added_to_a_registry_is_described_with_its_labels_and_buckets():
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    Counter("demo_things_total", "Things", ["kind"], registry=registry).labels("a")
    Histogram("demo_seconds", "Time", buckets=(1, 5), registry=registry)
    found = {m.name: m for m in metrics.metrics_of(registry)}
    assert found["demo_things_total"].labels == ("kind",) and found["demo_things_total"].values == {"kind": ("a",)}
    assert found["demo_seconds"].type == "histogram" and found["demo_seconds"].buckets == (1, 5)


# ---- exit codes -----------------------------------------------------------------------------------------------

def test_the_static_error_family_is_the_live_one():
    from automl.errors import ClassieError

    family = exit_codes.family()
    modules = {name.rsplit(".", 1)[0] for name in family}
    for module in modules:
        importlib.import_module(module)

    def live(cls: type[ClassieError]) -> set[type[ClassieError]]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= live(sub)
        return found

    codes = {f"{c.__module__}.{c.__qualname__}": c.exit_code for c in live(ClassieError)
             if c.__module__.split(".")[0] in source.PACKAGES}
    assert codes == {name: exit_code for name, (_, exit_code) in family.items()}


def test_the_exit_codes_page_names_every_exit_code_and_error(pages):
    page = pages["exit-codes"]
    for name, (_, exit_code) in exit_codes.family().items():
        assert f"`{name}`" in page
        assert f"Exit `{exit_code}`" in page
    assert "`_guard`" in page  # the one place the family is mapped
    health = next(e for e in exit_codes.literal_exits() if e.function == "health")
    assert health.codes == (0, 1)
    assert "restart: unless-stopped" in page


# ---- the hand-made file-formats page and its fragments ---------------------------------------------------------

def test_the_state_folder_table_names_every_path_the_code_joins_to_the_state_folder():
    page = (ROOT / "docs" / "reference" / "file-formats.md").read_text(encoding="utf-8")
    names = file_formats.state_names()
    assert {"models", "state.sqlite3", "cycle.lock", "logs/autosklearn.log"} <= names
    for name in names:
        assert f"`{name}" in page, f"the state folder's {name} is not on docs/reference/file-formats.md"


def test_every_fragment_the_page_places_exists_and_every_fragment_is_placed():
    page = (ROOT / "docs" / "reference" / "file-formats.md").read_text(encoding="utf-8")
    placed = set(re.findall(r"```\{classie-generated\} (\S+)", page))
    assert placed == set(file_formats.FRAGMENTS)


def test_the_examples_are_read_and_written_by_the_service_itself():
    from automl.taxonomy_file import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

    columns = file_formats.FRAGMENTS["taxonomy-columns"]()
    assert all(f"`{c}`" in columns for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))
    tree = file_formats.FRAGMENTS["taxonomy-example"]()
    assert "`/HE/OTHER`" in tree and "| population | 1 |" in tree
    assets = file_formats.FRAGMENTS["assets-example"]()
    assert "skipped: empty text" in assets and "is at 2 places of the taxonomy" in assets
    assert "| `a2` | none: to pre-annotate |" in assets
    output = file_formats.FRAGMENTS["output-example"]()
    line = json.loads(output.split("```json\n")[1].split("\n```")[0])
    assert set(line) == {"asset_id", "model_version", "created_at", "text_sha256", "facets", "priority",
                         "suggestions"}
    assert "rank,id,priority,why" in output


# ---- layout ---------------------------------------------------------------------------------------------------

def test_the_layout_page_names_every_module_with_its_first_sentence(pages):
    page = pages["layout"]
    for package in source.PACKAGES:
        for path in source.modules(package):
            said = markdown.inline(markdown.first_sentence(source.header(path)))
            if path.name == "__init__.py":  # the package's own sentence, under its heading
                assert f"## `{path.parent.relative_to(ROOT).as_posix()}/`\n\n{said}\n" in page, path
            else:
                assert f"| `{path.name}` | {said} |" in page, path
    assert "no function is longer than 60 lines" in page


def test_a_first_sentence_ends_at_a_full_stop_not_at_an_abbreviation():
    assert markdown.first_sentence("Texts, e.g. letters, are read. Then more.") == "Texts, e.g. letters, are read."
    assert markdown.inline("a_b <x> `c_d` --once") == "a\\_b \\<x\\> `c_d` `--once`"


# ---- the generation and the site ------------------------------------------------------------------------------

def test_a_page_that_did_not_change_is_not_written_again(tmp_path):
    assert {p.name for p in write_pages(tmp_path, ("metrics",))} == {"metrics.md"}
    assert write_pages(tmp_path, ("metrics",)) == []


def test_the_generated_pages_are_ignored_by_git():
    for name in PAGES:
        path = f"docs/reference/{name}.md"
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0, path


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
                           "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    def text(page: str) -> str:
        html = (tmp_path / "site" / "reference" / f"{page}.html").read_text(encoding="utf-8")
        return " ".join(re.sub(r"<[^>]+>", " ", html).split())

    assert "classie-automl train" in text("cli")
    assert "/HE/OTHER" in text("file-formats")  # a fragment, placed and parsed
