"""A catalogue of bad inputs on the files platform, each tried on a project that already has a model and
pre-annotations: the taxonomy file, the assets file (CSV, TSV, JSONL), the config file and the environment. Each case
says what must happen (exit code, and the message or the counted skip that names the place), and every case checks
that nothing already written was lost or altered. The configuration and state cases of tests/test_bad_setup.py, the
API's hostile requests (tests/test_api_hostile.py) and the platforms' JSON (below) complete it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "classie-automl")
TAXONOMY = "code,name,parent_code,keywords\nAN,Animals,,animal;pets\nAN1,Cats,AN,cat;cats\nAN2,Dogs,AN,dog;dogs\n" \
           "ED,Education,,school;education\n"
ASSETS = "id,text,labels\n1,a shelter for cats,AN1\n2,dogs and walks,AN2\n3,a village school,ED\n" \
         "u1,our cat rescue,\nu2,a new school,\n"
RUN = ["run", "--once", "--platform", "files", "--assets", "a.csv", "--taxonomy", "t.csv", "--state", "state"]
KEYWORDS_ONLY = {"CLASSIE_MODEL__MIN_EXAMPLES": "100000"}  # no search: this is about input, not the model


def write(name: str, text: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(text, encoding="utf-8")


def append(name: str, data: bytes) -> Callable[[Path], None]:
    def do(d: Path) -> None:
        with (d / name).open("ab") as f:
            f.write(data)
    return do


def deep_taxonomy(levels: int) -> str:
    """TAXONOMY with a chain of `levels` more levels under AN1."""
    chain = "".join(f"D{i},depth {i},{'D' + str(i - 1) if i else 'AN1'},\n" for i in range(levels))
    return TAXONOMY + chain


def wide_taxonomy(nodes: int) -> str:
    """TAXONOMY with `nodes` more codes: 100 roots and their children."""
    roots = "".join(f"R{i},root {i},,\n" for i in range(100))
    return TAXONOMY + roots + "".join(f"C{i},child {i},R{i % 100},\n" for i in range(nodes - 100))


def jsonl(d: Path) -> None:
    (d / "a.jsonl").write_text("\n".join([
        '{"id": "1", "text": "a shelter for cats", "labels": ["AN1"]}',
        '{"id": "2", "text": "dogs and walks", "labels": "AN2"}',
        '{"id": "3", "text": "a village school", "labels": ["ED"]}',
        '{"id": "4", "text": "a cat club"',  # truncated
        '[1, 2]',
        '{"id": "5", "text": "a school", "labels": {"code": "ED"}}',
        '{"id": "6", "text": 12345}',
        '{"id": null, "text": "no id"}',
        '{"id": "7", "text": "dogs", "labels": [["AN2"]]}',
        '{"id": "u1", "text": "our cat rescue"}', '{"id": "u2", "text": "a new school"}', ""]), encoding="utf-8")


@dataclass
class Case:
    mutate: Callable[[Path], None]
    exit: int
    says: list[str]  # in stderr, in this order of importance; an exit 2 also needs "Fix:"
    args: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    seconds: float = 60  # a generous bound on the run: what is tested is that it ends, not its speed


CASES = {
    # The taxonomy file: each problem with its line, nothing trained or pushed.
    "taxonomy duplicate code": Case(write("t.csv", TAXONOMY + "AN1,Cats again,AN,\n"), 2,
                                    ["t.csv, line 6: duplicate code 'AN1'"]),
    "taxonomy unknown parent": Case(write("t.csv", TAXONOMY + "ZZ1,Z,ZZ,\n"), 2, ["unknown parent_code 'ZZ'"]),
    "taxonomy cycle": Case(write("t.csv", "code,name,parent_code\nA,a,B\nB,b,A\n"), 2, ["forms a cycle A -> B -> A"]),
    "taxonomy header only": Case(write("t.csv", "code,name,parent_code\n"), 2, ["the taxonomy has no rows"]),
    "taxonomy empty file": Case(write("t.csv", ""), 2, ["missing column(s) code, name, parent_code"]),
    "taxonomy without parent_code": Case(write("t.csv", "code,name\nAN,Animals\n"), 2,
                                         ["missing column(s) parent_code"]),
    "taxonomy empty code": Case(write("t.csv", TAXONOMY + ",Nameless,AN,\n"), 2, ["line 6: empty code"]),
    "taxonomy bad regex": Case(write("t.csv", "code,name,parent_code,include_regex\nAN,a,,(unclosed\n"), 2,
                               ["include_regex of 'AN' is not a valid regular expression"]),
    "taxonomy missing": Case(lambda d: (d / "t.csv").unlink(), 2, ["t.csv"]),
    "taxonomy 40 levels deep": Case(write("t.csv", deep_taxonomy(40)), 0, ["taxonomy or model settings changed"]),
    "taxonomy of 10,000 nodes": Case(write("t.csv", wide_taxonomy(10_000)), 0, ["taxonomy or model settings changed"]),
    "taxonomy replaced by another": Case(write("t.csv", "code,name,parent_code\nX,x,\nY,y,X\n"), 2,
                                         ["label 'AN1' is not in the taxonomy", "the labelled assets fell from 3",
                                          "max_label_loss"]),
    "a code deleted since the last version": Case(write("t.csv", TAXONOMY.replace("AN1,Cats,AN,cat;cats\n", "")), 0,
                                                  ["label 'AN1' is not in the taxonomy (label dropped) (a.csv:2)",
                                                   "taxonomy or model settings changed"]),
    # The assets file: a record that cannot be used is a counted skip with its line; the others go on.
    "NUL bytes in a text": Case(append("a.csv", b"u3,a cat\x00 home,\n"), 0, ["pushed 1"]),
    "a row not in the file's encoding": Case(append("a.csv", "u4,caf\xe9 for dogs,\n".encode("latin-1")), 0,
                                             ["bytes that are not valid utf-8", "(a.csv:7)"]),
    "a label not in the taxonomy": Case(append("a.csv", b"5,a cat club,ZZ9\n"), 0,
                                        ["label 'ZZ9' is not in the taxonomy (label dropped) (a.csv:7)"]),
    "a duplicate id": Case(append("a.csv", b"1,another text,ED\n"), 0,
                           ["duplicate id (the first record is kept) (a.csv:7 (first at a.csv:2))"]),
    "an empty text": Case(append("a.csv", b"6,,AN1\n"), 0, ["empty text (a.csv:7)"]),
    "more fields than the header": Case(append("a.csv", b"7,cats, dogs and more,AN1\n"), 0,
                                        ["4 fields where the header has 3", "(a.csv:7)"]),
    "a quote left open": Case(append("a.csv", b'8,"a cat shelter,AN1\n9,dogs,AN2\n'), 0,
                              ["a quote opened and never closed"]),
    "a text of 50 MB": Case(append("a.csv", b"u9," + b"cat " * (13 * 1024 * 1024) + b",\n"), 0, ["pushed 1"]),
    "labels with the wrong separator": Case(append("a.csv", b"10,a cat school,AN1|ED\n"), 0,
                                            ["label 'AN1|ED' is not in the taxonomy"]),
    "no text column": Case(write("a.csv", "id,body,labels\n1,x,AN\n"), 2, ["missing column(s) 'text'"]),
    "a TSV named .csv": Case(write("a.csv", "id\ttext\tlabels\n1\tcats\tAN1\n"), 2,
                             ["the header has 'id\\ttext\\tlabels'"]),
    "an unknown file type": Case(write("a.xlsx", "PK"), 2, ["unknown format '.xlsx'"], args=["--assets", "a.xlsx"]),
    "the assets file emptied": Case(write("a.csv", "id,text,labels\n"), 2, ["no asset at all, where the last pull"
                                                                            " had 5"]),
    "the assets file missing": Case(lambda d: (d / "a.csv").unlink(), 2, ["a.csv: no such file"]),
    "JSONL records of every wrong shape": Case(jsonl, 0, [
        "not valid JSON", "not a JSON object", 'labels {"code": "ED"} are not a text or a list of codes',
        "text is missing or not a string", "empty id", 'labels [["AN2"]] are not a text or a list of codes'],
        args=["--assets", "a.jsonl"]),
    # The config file and the environment.
    "a config key that does not exist": Case(write("c.toml", "[model]\nbudget_secs = 3\n"), 2,
                                             ["model.budget_secs: Extra inputs are not permitted"],
                                             args=["--config", "c.toml"]),
    "a budget below its bound": Case(write("c.toml", "[model]\nbudget_seconds = -3\n"), 2,
                                     ["model.budget_seconds: Input should be greater than or equal to 1"],
                                     args=["--config", "c.toml"]),
    "a config that is not TOML": Case(write("c.toml", "[model\n"), 2, ["c.toml: not valid TOML"],
                                      args=["--config", "c.toml"]),
    "an environment value of the wrong type": Case(lambda d: None, 2, ["model.budget_seconds: Input should be a valid"
                                                                       " integer"],
                                                   env={"CLASSIE_MODEL__BUDGET_SECONDS": "abc"}),
    "a misspelt environment variable": Case(lambda d: None, 0, [
        "CLASSIE_MODLE__BUDGET_SECONDS is not a setting and is ignored. Fix: did you mean"
        " CLASSIE_MODEL__BUDGET_SECONDS?"], env={"CLASSIE_MODLE__BUDGET_SECONDS": "3"}),
}


def run(folder: Path, args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *RUN, *args], cwd=folder, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **KEYWORDS_ONLY, **env})


def written(folder: Path) -> dict[Path, bytes]:
    """What the first run wrote that must survive: the model version and the pre-annotations."""
    state = folder / "state"
    return {p: p.read_bytes() for p in [*(state / "models").rglob("*"), state / "preannotations.jsonl"]
            if p.is_file() and p.name != "CURRENT"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project after its first run: version 1 and its pre-annotations (copied for each case)."""
    folder = tmp_path_factory.mktemp("project")
    (folder / "t.csv").write_text(TAXONOMY, encoding="utf-8")
    (folder / "a.csv").write_text(ASSETS, encoding="utf-8")
    first = run(folder, [], {})
    assert first.returncode == 0, first.stderr[-2000:]
    return folder


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(tmp_path, project, name):
    case = CASES[name]
    tmp_path = Path(shutil.copytree(project, tmp_path / "project"))
    before = written(tmp_path)
    pushed_before = (tmp_path / "state" / "preannotations.jsonl").read_bytes()
    case.mutate(tmp_path)

    started = time.monotonic()
    done = run(tmp_path, case.args, case.env)
    assert time.monotonic() - started < case.seconds
    err = "\n".join(line for line in done.stderr.splitlines() if " DEBUG " not in line)
    assert done.returncode == case.exit, f"exit {done.returncode}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    for says in case.says:
        assert says in err, f"{says!r} not in:\n{err[-3000:]}"
    if case.exit == 2:
        assert "Fix:" in err or "fix:" in err, err[-3000:]
    # Nothing already written is lost or altered: the version's files, and the pre-annotations (appended to only).
    after = {p: p.read_bytes() for p in before if p.is_file()}
    assert {p: after.get(p) for p in before if p.name != "preannotations.jsonl"} == {
        p: b for p, b in before.items() if p.name != "preannotations.jsonl"}
    assert (tmp_path / "state" / "preannotations.jsonl").read_bytes().startswith(pushed_before)
    if case.exit == 2:
        assert not (tmp_path / "state" / "models" / "v0002").exists()
        assert (tmp_path / "state" / "preannotations.jsonl").read_bytes() == pushed_before


# ---- the platforms' JSON ------------------------------------------------------------------------------------------

def test_kili_labels_that_cannot_be_read_are_skips_not_negatives(tmp_path, monkeypatch):
    """A truncated jsonResponse (which the SDK turns into {}), an answer of the wrong shape, a category since gone
    from the interface: each a counted skip naming the asset, and none taught as "nothing applies"."""
    from kili_emulator import KiliEmulator, isolate_kili_sdk
    from kili_project import fill, interface, ukcat_taxonomy
    from service.app.factory import build_worker
    from service.config import Secrets, load_settings

    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    taxonomy = ukcat_taxonomy()
    with KiliEmulator(api_key="k", project_id="p1", json_interface=interface(taxonomy)) as emulator:
        fill(emulator, taxonomy, labelled=5, unlabelled=3)
        bad = {"truncated": '{"SUBJECT": {"categories": [{"na', "shape": {"SUBJECT": "HE"},
               "gone": {"SUBJECT": {"categories": [{"name": "GONE"}]}}, "children": {"SUBJECT": {"categories": ["HE"]}}}
        for name, response in bad.items():
            emulator.add_asset(name, f"an asset whose label is {name}")
            emulator.add_label(name, "DEFAULT", response)
        settings = load_settings(None, {"platform": "kili", "state_dir": str(tmp_path / "state"),
                                        "kili": {"project_id": "p1", "endpoint": emulator.endpoint},
                                        "model": {"min_examples": 100000}})
        report = build_worker(settings, Secrets(kili_api_key="k")).run_once()
    assert (report.labelled, report.unlabelled) == (5, 3)  # the four left out: neither labelled nor to pre-annotate
    assert report.skipped == {
        "its DEFAULT label holds no answer (empty, or JSON that cannot be read; fix: label it again in Kili)": 1,
        "a label holds job 'SUBJECT' with categories of an unreadable shape (ignored)": 1,
        "a label holds category 'SUBJECT/GONE', not in the interface (ignored)": 1,
        "a label holds a category of job 'SUBJECT' of an unreadable shape (ignored)": 1,
        "every answer of its label is outside the interface (asset left out)": 3}


@pytest.mark.parametrize("result, unknown", [
    ([{"from_name": "subject", "value": {"taxonomy": [["GONE"]]}}], ["subject: GONE"]),  # a choice since removed
    ([{"from_name": "subject", "value": {"taxonomy": "AN"}}], ["subject: 1 value(s) of an unreadable shape"]),
    ([{"from_name": "subject", "value": {"taxonomy": [["AN", 3]]}}], ["subject: 1 value(s) of an unreadable shape"]),
    ([{"from_name": ["subject"], "value": 1}, "text", None], []),  # not a result of the taxonomy's control
    ("not a list", []),
])
def test_label_studio_results_that_cannot_be_read_are_reported(result, unknown):
    from connectors.label_studio_schema import parse_label_config
    from test_label_studio_connector import taxonomy_config

    found: list[str] = []
    assert parse_label_config(taxonomy_config()).codes_of(result, found) == set() and found == unknown
