"""A worker killed with SIGKILL at random points (seeded) of 20 cycles, on the files platform and on Kili (the real
SDK against the emulator), while labels and assets keep arriving between the cycles: one cycle run to its end
afterwards leaves every unlabelled asset with exactly one pre-annotation of the version in service, and no asset with
two of any version."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import SMALL_TAXONOMY, write, write_assets
from kili_emulator import KiliEmulator, isolate_kili_sdk
from kili_project import answer, fill, interface, ukcat_taxonomy

CLI = str(Path(sys.executable).parent / "classie-automl")
ROUNDS = 20
KEY = "kill-key"


def killed_at_random(args: list[str], env: dict, rounds: int, seed: int, between) -> list[str]:
    """`rounds` runs of `args`, each killed after a random time within what an uninterrupted round takes (a run
    quicker than that ends on its own); `between(round)` changes the platform's data before each. Returns what
    happened."""
    rng = random.Random(seed)
    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    between(-1)  # a round as the others are, uninterrupted: how long one takes
    started = time.monotonic()
    typical = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert typical.returncode == 0, typical.stderr[-3000:]
    took = time.monotonic() - started
    outcomes = []
    for n in range(rounds):
        between(n)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(0.2, 0.9) * took)
            assert proc.returncode == 0, proc.stderr.read()[-3000:]
            outcomes.append("ended")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            outcomes.append("killed")
        finally:
            proc.stderr.close()
    return outcomes


@pytest.mark.slow
def test_files_platform_killed_anywhere(tmp_path):
    write(tmp_path / "t.csv", SMALL_TAXONOMY)
    rows = [(str(i), f"a shelter for cats number {i}", "AN1") for i in range(30)]
    rows += [(f"u{i}", f"our school and its dogs {i}", "") for i in range(1500)]
    write_assets(tmp_path / "a.csv", rows)
    env = {**os.environ, "CLASSIE_MODEL__MIN_EXAMPLES": "100000", "CLASSIE_WORKER__BATCH_SIZE": "50"}
    args = [CLI, "run", "--once", "--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy",
            str(tmp_path / "t.csv"), "--state", str(tmp_path / "state")]

    def between(n: int) -> None:  # new labels (every 5th round: a new version is due) and new assets
        if n % 5 == 4 and n >= 0:
            rows.extend((f"l{n}-{i}", f"a hospital for dogs {n} {i}", "AN2;HE") for i in range(15))
        rows.extend((f"n{n}-{i}", f"a new cat club {n} {i}", "") for i in range(40))
        write_assets(tmp_path / "a.csv", rows)

    outcomes = killed_at_random(args, env, ROUNDS, seed=5, between=between)
    final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]
    assert outcomes.count("killed") >= ROUNDS // 4, outcomes  # most are: measured 19 and 20 of 20

    state = tmp_path / "state"
    current = f"v{int((state / 'models' / 'CURRENT').read_text()):d}"
    lines = (state / "preannotations.jsonl").read_text(encoding="utf-8").splitlines()
    made = Counter((r["asset_id"], r["model_version"]) for r in map(json.loads, lines))
    assert max(made.values()) == 1  # nothing pushed twice, whatever the kill interrupted
    assert {a for a, v in made if v == current} == {r[0] for r in rows if not r[2]}


@pytest.mark.slow
def test_kili_killed_anywhere(tmp_path, monkeypatch):
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    taxonomy = ukcat_taxonomy()
    with KiliEmulator(api_key=KEY, project_id="p1", json_interface=interface(taxonomy)) as emulator:
        unlabelled = fill(emulator, taxonomy, labelled=30, unlabelled=150)
        config = write(tmp_path / "c.toml", f'[kili]\nendpoint = "{emulator.endpoint}"\npush_batch = 10\n'
                                            '[worker]\nbatch_size = 10\n[model]\nmin_examples = 100000\n')
        args = [CLI, "run", "--once", "--platform", "kili", "--project-id", "p1", "--state", str(tmp_path / "state"),
                "--config", str(config)]

        def between(n: int) -> None:
            if n % 5 == 4 and n >= 0:  # a human labels one: a new version is due, and that one is not pre-annotated
                emulator.add_label(unlabelled.pop(), "DEFAULT", answer(taxonomy, {"ED"}))
            for i in range(8):
                emulator.add_asset(f"new-{n}-{i}", f"A youth football club, number {n}.{i}")
                unlabelled.append(f"new-{n}-{i}")

        outcomes = killed_at_random(args, {**os.environ, "KILI_API_KEY": KEY}, ROUNDS, seed=9, between=between)
        final = subprocess.run(args, env={**os.environ, "KILI_API_KEY": KEY}, capture_output=True, text=True,
                               timeout=300)
        assert final.returncode == 0, final.stderr[-3000:]
        assert outcomes.count("killed") >= ROUNDS // 4, outcomes  # most are: measured 19 and 20 of 20
        ours = Counter((lb["assetId"], lb["modelName"]) for lb in emulator.labels
                       if lb["labelType"] == "PREDICTION" and (lb["modelName"] or "").startswith("classie-automl"))
        current = f"classie-automl-v{int((tmp_path / 'state' / 'models' / 'CURRENT').read_text()):d}"
    assert max(ours.values()) == 1, [k for k, v in ours.items() if v > 1]
    assert {a for a, m in ours if m == current} == set(unlabelled)
