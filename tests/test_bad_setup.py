"""Configuration and state that cannot be used end with exit code 2 and one message naming the place and the fix,
never a traceback; nothing already written is touched, and no model or pre-annotation is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write, write_assets

CLI = str(Path(sys.executable).parent / "classie-automl")


def _case(tmp: Path, name: str) -> tuple[list[str], dict, str]:
    """(arguments after `run --once`, extra environment, what the message must say) for one bad input."""
    files = ["--platform", "files", "--assets", str(tmp / "a.csv"), "--taxonomy", str(tmp / "t.csv")]
    state = ["--state", str(tmp / "state")]
    cases = {
        "config is a folder": (["--config", str(tmp / "folder")], {}, "is a folder, not a config file"),
        "config not UTF-8": (["--config", str(tmp / "latin1.toml")], {}, "not UTF-8 text"),
        "unknown encoding": (["--config", str(tmp / "encoding.toml"), *files, *state], {}, "unknown encoding 'nope'"),
        "empty label separator": (["--config", str(tmp / "separator.toml"), *files, *state], {},
                                  "files.label_separator"),
        "facet roots not JSON": ([*files, *state], {"CLASSIE_TAXONOMY__FACET_ROOTS": "{bad"},
                                 "CLASSIE_TAXONOMY__FACET_ROOTS"),
        "taxonomy is a folder": (["--platform", "files", "--assets", str(tmp / "a.csv"), "--taxonomy",
                                  str(tmp / "folder"), *state], {}, "is a folder, not a taxonomy file"),
        "assets is a folder": (["--platform", "files", "--assets", str(tmp / "folder"), "--taxonomy",
                                str(tmp / "t.csv"), *state], {}, "is a folder, not an assets file"),
        "state under a file": ([*files, "--state", str(tmp / "a.csv" / "state")], {}, "state folder"),
        "ledger not a database": ([*files, "--state", str(tmp / "damaged")], {}, "the ledger cannot be read"),
        "CURRENT is garbage": ([*files, "--state", str(tmp / "pointer")], {}, "holds 'v1?', not a version number"),
        "output is a folder": ([*files, *state, "--output", str(tmp / "folder")], {},
                               "is a folder; pre-annotations are written to a file"),
    }
    return cases[name]


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "latin1.toml").write_bytes('state_dir = "caf\xe9"\n'.encode("latin-1"))
    write(tmp_path / "encoding.toml", '[files]\nencoding = "nope"\n')
    write(tmp_path / "separator.toml", '[files]\nlabel_separator = ""\n')
    write(tmp_path / "t.csv", "code,name,parent_code\nA,Animals,\n")
    write_assets(tmp_path / "a.csv", [("1", "cats", "")])
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "state.sqlite3").write_bytes(b"not a database, " * 64)
    (tmp_path / "pointer" / "models").mkdir(parents=True)
    (tmp_path / "pointer" / "models" / "CURRENT").write_text("v1?\n")
    return tmp_path


@pytest.mark.parametrize("name", ["config is a folder", "config not UTF-8", "unknown encoding",
                                  "empty label separator", "facet roots not JSON", "taxonomy is a folder",
                                  "assets is a folder", "state under a file", "ledger not a database",
                                  "CURRENT is garbage", "output is a folder"])
def test_bad_configuration_and_state_are_explained(tmp, name):
    args, env, says = _case(tmp, name)
    before = {p: p.read_bytes() for p in tmp.rglob("*") if p.is_file()}
    done = subprocess.run([CLI, "run", "--once", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert says in done.stderr and "Fix:" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in before} == before  # nothing that was there is changed (or gone)
    assert not (tmp / "state" / "models").exists() and not (tmp / "state" / "preannotations.jsonl").exists()


def test_an_emptied_assets_file_drops_nothing_and_trains_nothing(tmp_path, small_taxonomy):
    rows = [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"), ("u1", "our cat rescue", "")]
    write_assets(tmp_path / "a.csv", rows)
    flags = ["--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy", str(small_taxonomy),
             "--state", str(tmp_path / "state")]
    first = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)
    assert first.returncode == 0 and "model v1: trained" in first.stdout, first.stderr[-2000:]
    output = (tmp_path / "state" / "preannotations.jsonl").read_bytes()

    write_assets(tmp_path / "a.csv", [])  # the header only: emptied by a script gone wrong
    emptied = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)
    assert emptied.returncode == 2 and "the platform gave no asset at all, where the last pull had 3" in \
        emptied.stderr and "Fix:" in emptied.stderr and "Traceback" not in emptied.stderr, emptied.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "state" / "models").iterdir()) == ["CURRENT", "v0001"]
    assert (tmp_path / "state" / "preannotations.jsonl").read_bytes() == output

    write_assets(tmp_path / "a.csv", rows)  # restored: the cache was kept, so nothing changed
    again = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)
    assert again.returncode == 0 and "current, no training needed" in again.stdout, again.stdout


def test_a_new_output_file_gets_every_pre_annotation(tmp_path, small_taxonomy):
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("u1", "our cat rescue", ""),
                                      ("u2", "a school for all", "")])
    flags = ["--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy", str(small_taxonomy),
             "--state", str(tmp_path / "state")]
    assert "2 written" in subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True).stdout
    moved = subprocess.run([CLI, "run", "--once", *flags, "--output", str(tmp_path / "elsewhere.jsonl")],
                           capture_output=True, text=True)
    assert moved.returncode == 0 and "2 written" in moved.stdout, moved.stdout + moved.stderr[-2000:]
    assert "pre-annotations now go to files:" in moved.stderr and "gets every pre-annotation" in moved.stderr
    assert len((tmp_path / "elsewhere.jsonl").read_text().splitlines()) == 2
    back = subprocess.run([CLI, "run", "--once", *flags], capture_output=True, text=True)  # the first file again
    assert back.returncode == 0 and "0 written, 2 already there" in back.stdout, back.stdout
    assert len((tmp_path / "state" / "preannotations.jsonl").read_text().splitlines()) == 2  # none twice


def test_an_unterminated_quote_is_a_skip_with_its_lines_not_one_long_text(tmp_path, small_taxonomy):
    from automl.taxonomy_file import load_taxonomy
    from connectors.base import SkipLog
    from connectors.files import read_assets

    rows = "".join(f"{i},text of row {i},\n" for i in range(3, 33))
    write(tmp_path / "q.csv", 'id,text,labels\n1,a fine row,AN\n2,"a quote left open,\n' + rows)
    skipped = SkipLog()
    assets = list(read_assets(tmp_path / "q.csv", load_taxonomy(small_taxonomy), skipped))
    assert [a.id for a in assets] == ["1"]  # the 30 rows after the quote are not taken as row 2's text
    assert skipped.as_dict() == {"a quote opened and never closed (the record ran to the end of the file; fix: close"
                                 " the quote on its first line)": 1}
    write(tmp_path / "ok.csv", 'id,text,labels\n1,"a text, closed",AN\n2,"the last text\nover two lines",\n')
    assert [a.id for a in read_assets(tmp_path / "ok.csv", load_taxonomy(small_taxonomy), SkipLog())] == ["1", "2"]


def test_a_damaged_model_file_makes_the_previous_version_serve_again_without_training(tmp_path, small_taxonomy):
    rows = [("1", "a shelter for cats", "AN1"), ("2", "dogs and walks", "AN2"), ("u1", "our cat rescue", "")]
    args = ["--platform", "files", "--assets", str(write_assets(tmp_path / "a.csv", rows)), "--taxonomy",
            str(small_taxonomy), "--state", str(tmp_path / "state")]
    env = {**os.environ, "CLASSIE_MODEL__MIN_EXAMPLES": "100000"}
    for command in (["run", "--once"], ["train"]):  # v1, then v2 on the same labels
        assert subprocess.run([CLI, *command, *args], env=env, capture_output=True, timeout=120).returncode == 0
    models = tmp_path / "state" / "models"
    (models / "v0002" / "model.joblib").write_bytes(b"not a model any more")
    done = subprocess.run([CLI, "run", "--once", *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "v2 cannot be loaded" in done.stderr and "v1 serves again" in done.stderr, done.stderr[-3000:]
    assert (models / "CURRENT").read_text().strip() == "1" and not (models / "v0003").exists()  # no training


@pytest.mark.parametrize("which", ["taxonomy", "assets"])
def test_the_polling_worker_stops_at_once_on_a_path_that_is_a_folder(tmp_path, small_taxonomy, which):
    """Found by the container trial: a taxonomy mounted as a folder made the polling worker fail every cycle, forever
    (a mount stays a folder), instead of exiting 2 with the fix as `run --once` does."""
    (tmp_path / "folder").mkdir()
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1")])
    paths = {"taxonomy": small_taxonomy, "assets": tmp_path / "a.csv", which: tmp_path / "folder"}
    done = subprocess.run([CLI, "run", "--platform", "files", "--assets", str(paths["assets"]), "--taxonomy",
                           str(paths["taxonomy"]), "--state", str(tmp_path / "state")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CLASSIE_WORKER__METRICS_PORT": ""})
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"is a folder, not {'a taxonomy' if which == 'taxonomy' else 'an assets'} file" in done.stderr
    assert "Fix:" in done.stderr and "cycle failed" not in done.stderr
