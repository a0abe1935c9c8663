"""The front door works as written: the README's shape and links, and its first quick start (the demo) run from a clean
state folder exactly as a newcomer types it, with the follow-up commands of the getting-started page.

The Label Studio and Kili quick starts run in their own tests (tests/test_label_studio_quick_start.py,
tests/test_kili_examples.py); the compose one with real containers in scripts/docker-trial.sh."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", markdown, flags=re.S)


def test_the_readme_is_a_front_door_with_the_two_commands_first():
    text = README.read_text()
    assert len(text.splitlines()) <= 200, "the README is a front door: guides and figures belong in docs/"
    first = code_blocks(text)[0]
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == ["./dev demo", "./dev test"]
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", ["README.md", "CONTRIBUTING.md", "CHANGELOG.md", "locks/README.md",
                                  "examples/ukcat/README.md", "examples/kili/README.md"])
def test_every_relative_link_of_the_pages_outside_the_site_leads_somewhere(page):
    path = ROOT / page
    assert path.exists(), f"{page} is named by the README or the docs and must exist"
    broken = [target for target in LINK.findall(path.read_text())
              if "://" not in target and not target.startswith("mailto:")
              and not (path.parent / target).exists()]
    assert not broken, f"{page} links to files that do not exist: {broken}"


def cli_lines(page: Path) -> list[str]:
    """The `.venv/bin/classie-automl ...` commands of a page's code blocks, continuation lines joined."""
    lines = []
    for block in code_blocks(page.read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command.startswith(".venv/bin/classie-automl"):
                lines.append(command)
    return lines


def test_the_demo_quick_start_runs_from_a_clean_state_folder_and_its_follow_ups_work(tmp_path):
    state = tmp_path / "state"
    # The README's command as typed; only the state folder (clean, outside the checkout) and the budget differ.
    env = {**os.environ, "CLASSIE_STATE_DIR": str(state), "CLASSIE_MODEL__BUDGET_SECONDS": "15"}
    first = subprocess.run(["./dev", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "model v1: trained (no model yet)" in first.stdout
    assert "model v1 on 821 labelled assets of test.csv" in first.stdout

    records = [json.loads(line) for line in (state / "preannotations.jsonl").read_text().splitlines()]
    assert len(records) == 821 and {r["model_version"] for r in records} == {"v1"}
    assert {"facets", "suggestions", "priority"} <= set(records[0])
    # Every file the getting-started page's table names is there.
    page = (ROOT / "docs" / "getting-started.md").read_text()
    named = re.findall(r"^\| `([^`]+)` \|", page, flags=re.M)
    assert "preannotations.jsonl" in named and len(named) >= 5
    assert [name for name in named if not (state / name).exists()] == []

    again = subprocess.run(["./dev", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "model v1: current, no training needed" in again.stdout
    assert "0 written, 821 already there" in again.stdout
    assert len((state / "preannotations.jsonl").read_text().splitlines()) == 821

    follow_ups = [c for c in cli_lines(ROOT / "docs" / "getting-started.md") if "examples/ukcat" in c]
    assert len(follow_ups) >= 2, "the page's follow-up commands were not found"
    for command in follow_ups:
        args = shlex.split(command)
        done = subprocess.run([str(ROOT / args[0]), *args[1:]], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
        assert "v1" in done.stdout, command
