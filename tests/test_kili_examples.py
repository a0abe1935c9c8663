"""Kili as a data lead meets it: docker/kili.env.example names what a Kili worker in Docker reads and nothing else (each
variable judged by the service's own checks and loaders, and the worker built from the file), examples/kili's
interface is read by the connector's schema code into a 3-level tree of UK-CAT codes, its keyword file fits that tree
row by row, and one worker cycle configured by the env file pushes pre-annotations to the Kili emulator (real SDK)."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from automl.taxonomy import with_rules
from automl.taxonomy_file import load_taxonomy
from conftest import EXAMPLE as UKCAT
from conftest import example_rows
from connectors.kili import KiliConnector, KiliError
from connectors.kili_schema import parse_interface
from kili_emulator import KiliEmulator, isolate_kili_sdk
from service.app.factory import build_worker
from service.app.logs import FORMATS
from service.config import (
    NOT_SETTINGS,
    SECRETS,
    ConfigError,
    Settings,
    load_settings,
    read_secrets,
    unknown_variables,
)
from test_docker import stage

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / "docker" / "kili.env.example"
EXAMPLE = ROOT / "examples" / "kili"
INTERFACE = json.loads((EXAMPLE / "interface.json").read_text(encoding="utf-8"))
KEYWORDS = EXAMPLE / "keywords.csv"
KEY = "placeholder-kili-key-0123"  # what the test writes in the mounted key file

# What a Kili worker needs set, and all a Kili worker may be given (the rest belongs to other platforms or to serve).
REQUIRED = {"CLASSIE_PLATFORM", "CLASSIE_KILI__PROJECT_ID", "KILI_API_KEY_FILE"}
KILI_WORKER_SECTIONS = {"platform", "kili", "taxonomy", "model", "worker", "label_issues", "security"}
KILI_WORKER_OTHERS = {"KILI_API_KEY_FILE", "KILI_API_ENDPOINT", "CLASSIE_LOG_FORMAT", "CLASSIE_LOG_LEVEL"}
PLATFORM_VARIABLES = {"KILI_API_ENDPOINT", "LABEL_STUDIO_URL"}  # the platforms' own, read by service.config
COMMENTED = re.compile(r"# ([A-Z][A-Z0-9_]*)=(.*)")


@dataclass(frozen=True)
class EnvVariable:
    name: str
    value: str
    line: int
    optional: bool  # written commented out: "# NAME=value"


def read_env_file(path: Path) -> list[EnvVariable]:
    """The variables of an env file as `docker run --env-file` reads them (NAME=value, the value exactly as written,
    quotes and all), and the optional ones written commented out. What Docker would read otherwise than a reader
    expects fails here: quotes or a comment after a value (both kept in the value), spaces around the name, a
    variable without its one line of comment above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        commented = COMMENTED.fullmatch(line)
        if commented:
            name, value, optional = commented.group(1), commented.group(2), True
        elif not line.strip() or line.startswith("#"):
            continue
        else:
            name, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}:{n}: not NAME=value: {line!r}"
            optional = False
        where = f"{path.name}:{n} ({name})"
        assert value == value.strip() and not re.search(r"\s#", value), f"{where}: a comment or spaces in the value"
        assert not re.fullmatch(r"""(['"]).*\1""", value), f"{where}: Docker keeps the quotes in the value"
        above = lines[n - 2] if n >= 2 else ""
        before = lines[n - 3] if n >= 3 else ""
        assert above.startswith("# ") and not COMMENTED.fullmatch(above), f"{where}: no comment line above it"
        assert not before.strip() or COMMENTED.fullmatch(before) or not before.startswith("#"), (
            f"{where}: its comment takes more than one line")
        out.append(EnvVariable(name, value, n, optional))
    names = [v.name for v in out]
    assert len(names) == len(set(names)), f"{path.name}: a variable twice: {names}"
    return out


def problems(names: list[str]) -> list[str]:
    """What the service would make of each variable: a CLASSIE_* setting must name a section and a field the settings
    have (the service warns of an unknown top level itself; an unknown field stops it), another variable must be one
    the service reads (a secret, its _FILE, a platform's own variable, or one of its non-setting CLASSIE_* ones)."""
    found = list(unknown_variables(dict.fromkeys(names, "")))
    read = {*SECRETS, *(f"{s}_FILE" for s in SECRETS), *PLATFORM_VARIABLES, *NOT_SETTINGS}
    for name in names:
        if not name.startswith("CLASSIE_"):
            if name not in read:
                found.append(f"{name} is not read by the service")
        elif name not in NOT_SETTINGS:
            section, _, key = name.removeprefix("CLASSIE_").lower().partition("__")
            fields = getattr(Settings.model_fields.get(section), "annotation", None)
            if section in Settings.model_fields and key and key not in getattr(fields, "model_fields", {}):
                found.append(f"{name}: [{section}] has no setting {key!r}")
    return found


def setting_of(name: str) -> tuple[str, ...]:
    """CLASSIE_WORKER__INTERVAL_SECONDS -> ("worker", "interval_seconds")."""
    return tuple(name.removeprefix("CLASSIE_").lower().split("__"))


def image_environment() -> dict[str, str]:
    """The CLASSIE_* variables the image's runtime stage sets (docker/Dockerfile), which an env file adds to."""
    env = {}
    for keyword, args in stage("runtime"):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in args.split())
    return {name: value for name, value in env.items() if name.startswith("CLASSIE_")}


def in_project(path: str) -> str:
    """A path inside the image (the build stage copies the project to /app) as the same file in this checkout."""
    assert ("COPY", "examples examples") in stage("build") and ("WORKDIR", "/app") in stage("build")
    assert "!examples/" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()  # in the build context
    return str(ROOT / Path(path).relative_to("/app")) if path.startswith("/app/") else path


def worker_environment(tmp_path: Path, optional: bool) -> dict[str, str]:
    """What the worker's process sees with `docker run --env-file kili.env` and the key file mounted: the image's
    variables, then the file's (its optional ones too when `optional`), the volume and the mount made local."""
    env = image_environment()
    env.update({v.name: v.value for v in read_env_file(ENV_EXAMPLE) if optional or not v.optional})
    env["CLASSIE_STATE_DIR"] = str(tmp_path / "state")  # the volume
    key_file = tmp_path / "kili_api_key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    env["KILI_API_KEY_FILE"] = str(key_file)  # the mounted secret
    if "CLASSIE_TAXONOMY__PATH" in env:
        env["CLASSIE_TAXONOMY__PATH"] = in_project(env["CLASSIE_TAXONOMY__PATH"])
    return env


def use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in [n for n in os.environ if n.startswith(("CLASSIE_", "KILI_API_", "LABEL_STUDIO_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def as_written(value: str) -> object:
    """An env value as the service's loader reads it: JSON where it is JSON (numbers, true, lists), empty: unset."""
    if value == "":
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    """The example's Kili project: its id is the env file's placeholder, its key the one in the mounted file."""
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    project_id = next(v.value for v in read_env_file(ENV_EXAMPLE) if v.name == "CLASSIE_KILI__PROJECT_ID")
    with KiliEmulator(api_key=KEY, project_id=project_id, json_interface=INTERFACE, title="UK-CAT slice") as emu:
        yield emu


def ukcat_rows() -> dict[str, dict[str, str]]:
    with (UKCAT / "taxonomy.csv").open(encoding="utf-8", newline="") as f:
        return {row["code"]: row for row in csv.DictReader(f)}


# ---- the env file ---------------------------------------------------------------------------------------------------

def test_the_env_example_sets_what_a_kili_worker_needs_and_offers_only_what_it_reads():
    variables = read_env_file(ENV_EXAMPLE)
    names = [v.name for v in variables]
    assert {v.name for v in variables if not v.optional} == REQUIRED
    assert problems(names) == []
    sections = {setting_of(n)[0] for n in names if n.startswith("CLASSIE_") and n not in NOT_SETTINGS}
    assert sections <= KILI_WORKER_SECTIONS, f"not for a Kili worker: {sections - KILI_WORKER_SECTIONS}"
    others = {n for n in names if not n.startswith("CLASSIE_") or n in NOT_SETTINGS}
    assert others <= KILI_WORKER_OTHERS, f"not for a Kili worker: {others - KILI_WORKER_OTHERS}"
    # The secret only through a file; the values the service reads outside the settings are ones it takes.
    assert "KILI_API_KEY" not in names
    values = {v.name: v.value for v in variables}
    assert values["CLASSIE_PLATFORM"] == "kili" and values["CLASSIE_LOG_FORMAT"] in FORMATS
    assert isinstance(logging.getLevelName(values["CLASSIE_LOG_LEVEL"]), int)
    # Nothing the image sets is set again, but for the settings it offers to change.
    assert set(image_environment()) & set(names) <= {"CLASSIE_WORKER__METRICS_PORT", "CLASSIE_LOG_FORMAT"}


@pytest.mark.parametrize("typo", ["CLASSIE_KILI__PROJCT_ID", "CLASSIE_KILLI__PROJECT_ID", "CLASSIE_KILI_PROJECT_ID",
                                  "KILI_API_KEY_FLE", "CLASSIE_LOG_FROMAT", "CLASSIE_WORKER__INTERVAL"])
def test_a_misspelt_variable_is_a_problem(typo):
    """The check above could fail: each misspelling of a variable of the file is found."""
    names = [v.name for v in read_env_file(ENV_EXAMPLE)]
    assert problems(names) == [] and problems([*names, typo]) != []


def test_an_env_file_docker_would_read_otherwise_is_refused(tmp_path):
    for text, problem in [("# what\nA=\"quoted\"\n", "quotes"), ("# what\nA=1 # one\n", "comment"),
                          ("A=1\n", "no comment line"), ("# what\n# more\nA=1\n", "more than one line"),
                          ("# what\nA B=1\n", "not NAME=value")]:
        path = tmp_path / "bad.env"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(AssertionError, match=problem):
            read_env_file(path)


@pytest.mark.parametrize("optional", [False, True], ids=["required only", "with every optional one"])
def test_the_kili_worker_is_built_from_the_env_example(tmp_path, monkeypatch, emulator, optional):
    env = worker_environment(tmp_path, optional)
    env["KILI_API_ENDPOINT"] = emulator.endpoint  # this Kili, in place of Kili's cloud
    use_environment(monkeypatch, env)
    settings, secrets = load_settings(), read_secrets()

    assert secrets.kili_api_key is not None and secrets.kili_api_key.get_secret_value() == KEY
    assert settings.kili.endpoint == emulator.endpoint and settings.state_dir == tmp_path / "state"
    # Each setting the file sets reaches the setting it names, with the value it writes.
    loaded = settings.model_dump(mode="json")
    for v in read_env_file(ENV_EXAMPLE):
        if v.name.startswith("CLASSIE_") and v.name not in NOT_SETTINGS and (optional or not v.optional):
            value = loaded
            for part in setting_of(v.name):
                value = value[part]
            written = as_written(in_project(v.value))
            assert value == written, v.name

    worker = build_worker(settings, secrets)
    assert isinstance(worker.connector, KiliConnector)
    taxonomy = worker.connector.pull_taxonomy()
    assert len(taxonomy) == 48 and taxonomy.facets == ["SUBJECT"]
    ruled = sum(node.has_rule for node in taxonomy.nodes.values())
    assert ruled == (48 if optional else 0)  # the keyword file is one of the optional settings


def test_the_placeholders_left_as_they_are_stop_the_worker_with_the_fix(tmp_path, monkeypatch):
    """The file as written, on a machine without the key mounted; then the key mounted and the id still the
    placeholder: each stops with what to do (the README of examples/kili quotes both)."""
    as_written_env = {v.name: v.value for v in read_env_file(ENV_EXAMPLE) if not v.optional}
    with pytest.raises(ConfigError, match=re.escape(f"KILI_API_KEY_FILE={as_written_env['KILI_API_KEY_FILE']}:"
                                                    " cannot read it (No such file or directory). Fix: mount the"
                                                    " secret there or set KILI_API_KEY instead.")):
        read_secrets(as_written_env)
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    with KiliEmulator(api_key=KEY, project_id="another-project", json_interface=INTERFACE) as emu:
        env = {**worker_environment(tmp_path, optional=False), "KILI_API_ENDPOINT": emu.endpoint}
        use_environment(monkeypatch, env)
        with pytest.raises(KiliError, match=re.escape(f"no Kili project '{as_written_env['CLASSIE_KILI__PROJECT_ID']}'"
                                                      " for this API key. Fix: check --project-id (or"
                                                      " CLASSIE_KILI__PROJECT_ID)")):
            build_worker(load_settings(), read_secrets())


# ---- the interface and its keyword file -----------------------------------------------------------------------------

def test_the_example_interface_is_a_three_level_slice_of_ukcat():
    schema = parse_interface(INTERFACE)
    taxonomy = schema.taxonomy()
    assert taxonomy.facets == ["SUBJECT"] and taxonomy.levels("SUBJECT") == [1, 2, 3]
    assert [len(taxonomy.codes_at("SUBJECT", level)) for level in (1, 2, 3)] == [3, 13, 32]
    assert set(schema.job_input.values()) == {"checkbox"} and not taxonomy.single_choice
    ukcat = ukcat_rows()
    for code, node in taxonomy.nodes.items():
        parent = taxonomy.nodes[node.parent].key if node.parent else ""
        assert ukcat[node.key]["name"] == node.name and ukcat[node.key]["parent_code"] == parent, code
    # Every level-3 category sits under a level-2 one under a level-1 one, each in its own child job.
    deepest = taxonomy.codes_at("SUBJECT", 3)
    assert all(len(taxonomy.ancestors(c)) == 2 for c in deepest)
    assert "PERFORMING_ART/AR301" in deepest and taxonomy.ancestors("PERFORMING_ART/AR301") == ["ARTS/AR300",
                                                                                                  "SUBJECT/AR"]


def test_the_keyword_file_fits_the_interface_row_by_row():
    taxonomy = parse_interface(INTERFACE).taxonomy()
    rules = load_taxonomy(KEYWORDS)
    ruled, unused = with_rules(taxonomy, rules)
    assert unused == []
    places = {node.path for node in taxonomy.nodes.values()}
    assert all(rule.path in places for rule in rules.nodes.values())  # each row at its own place, not by its key
    assert len(rules) == len(taxonomy) and all(node.has_rule for node in ruled.nodes.values())
    # UK-CAT's own rules, where it has one.
    ukcat = ukcat_rows()
    for rule in rules.nodes.values():
        source = ukcat[rule.key]
        if source["include_regex"]:
            assert (rule.include_regex, rule.exclude_regex) == (source["include_regex"], source["exclude_regex"])


# ---- a cycle ---------------------------------------------------------------------------------------------------------

def labeller_answer(codes: set[str]) -> dict:
    """A labeller's nested answer in the example's interface choosing the categories `codes` (their parents too)."""
    jobs = INTERFACE["jobs"]

    def answer(job: str) -> dict:
        categories = []
        for key, category in jobs[job]["content"]["categories"].items():
            children = {child: answer(child) for child in category["children"]}
            children = {child: a for child, a in children.items() if a["categories"]}
            if key in codes or children:
                categories.append({"name": key, "confidence": 100, **({"children": children} if children else {})})
        return {"categories": categories}

    return {job: answer(job) for job, spec in jobs.items() if not spec["isChild"] and answer(job)["categories"]}


def fill(emulator: KiliEmulator, labelled: int, unlabelled: int) -> tuple[list[str], list[str]]:
    """UK-CAT charities with codes of the slice: the first `labelled` of the training split with a labeller's answer,
    the first `unlabelled` of the test split without one. Returns both lists of asset ids."""
    keys = {category for job in INTERFACE["jobs"].values() for category in job["content"]["categories"]}
    ids: tuple[list[str], list[str]] = ([], [])
    for split, wanted, out in (("train.csv", labelled, ids[0]), ("test.csv", unlabelled, ids[1])):
        for org_id, text, labels in example_rows(split):
            codes = set(labels.split(";")) & keys
            if codes and len(out) < wanted:
                emulator.add_asset(org_id, text)
                if out is ids[0]:
                    emulator.add_label(org_id, "DEFAULT", labeller_answer(codes))
                out.append(org_id)
    return ids


@pytest.mark.parametrize("labelled", [0, 40], ids=["before any label: the keyword file alone", "40 labelled"])
def test_a_worker_configured_by_the_env_example_pre_annotates_the_example_project(tmp_path, monkeypatch, emulator,
                                                                                   caplog, labelled):
    _, unlabelled = fill(emulator, labelled=labelled, unlabelled=8)
    env = worker_environment(tmp_path, optional=True)
    # This Kili, and the tiny budget of the connector tests (at 40 labels no level gets a search: linear models).
    env.update({"KILI_API_ENDPOINT": emulator.endpoint, "CLASSIE_MODEL__BUDGET_SECONDS": "30",
                "CLASSIE_MODEL__MAX_EVALUATIONS": "2", "CLASSIE_MODEL__CV_FOLDS": "3"})
    use_environment(monkeypatch, env)
    with caplog.at_level(logging.WARNING, logger="connectors"):
        worker = build_worker(load_settings(), read_secrets())
    assert not caplog.records, "the keyword file fits the interface: nothing to warn of"

    report = worker.run_once()
    assert (report.labelled, report.unlabelled) == (labelled, 8)
    assert report.trained and report.model_version == "v1" and report.written == report.prioritised == 8

    ours = [lb for lb in emulator.labels if lb["labelType"] == "PREDICTION"]
    assert Counter((lb["assetId"], lb["modelName"]) for lb in ours) == Counter(
        {(asset, "classie-automl-v1"): 1 for asset in unlabelled})
    schema = parse_interface(INTERFACE)
    levels: Counter[int] = Counter()
    for label in ours:
        response = label["jsonResponse"]
        unknown: list[str] = []
        codes = schema.codes_of(json.loads(response) if isinstance(response, str) else response, unknown)
        assert not unknown
        assert all(schema.categories[c].parent in codes for c in codes if schema.categories[c].parent)
        levels.update(schema.categories[c].level for c in codes)
    assert levels[1] and levels[2] and levels[3], levels  # nested down to the third level
    # [label_issues] push (an optional line of the env file): the likely mistakes in the labels, as Kili issues.
    assert len(emulator.issues) == report.label_issues_shown and (report.label_issues_shown > 0) == (labelled > 0)
    # A second cycle with nothing new on Kili trains and pushes nothing.
    quiet = worker.run_once()
    assert (quiet.trained, quiet.written) == (False, 0)
