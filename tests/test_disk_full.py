"""The state folder's disk filling up, or mounted read-only. The state folder is on a small tmpfs, filled to leave
a little room, so that the space runs out at a different write each time (the ledger, after a model version, the
pre-annotations). Every run ends with exit code 2 and the fix, never a traceback; the version in service stays
loadable; and once space is freed, the next run finishes the work with nothing lost or pushed twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from conftest import SMALL_TAXONOMY, write, write_assets

CLI = str(Path(sys.executable).parent / "classie-automl")
SIZE = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs. Mounting one needs root (CAP_SYS_ADMIN): where that is not given, the test is skipped with the
    reason, shown by `.ci/run`'s -ra summary."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here: a small disk cannot be made")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): a small disk needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all the free space of `disk` but `leave` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    with filler.open("ab") as f:
        f.truncate(0)
        free = stats.f_bavail * stats.f_frsize
        f.write(b"\0" * max(0, free - leave))
    return filler


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "run", "--once", "--platform", "files", "--assets", str(folder / "a.csv"),
                           "--taxonomy", str(folder / "t.csv"), "--state", str(folder / "disk" / "state"), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CLASSIE_MODEL__MIN_EXAMPLES": "100000"})


def pushed(state: Path) -> Counter:
    lines = (state / "preannotations.jsonl").read_text(encoding="utf-8").splitlines()
    return Counter((r["asset_id"], r["model_version"]) for r in map(json.loads, lines))


# Measured: 0 and 48 KiB run out in the pull (SQLite), 300 after v2 is written, before any of it is pushed, 500
# halfway through the push; 1,200 is enough.
@pytest.mark.parametrize("leave_kib", [0, 48, 300, 500, 1200])
def test_a_full_disk_loses_nothing_and_the_next_run_carries_on(tmp_path, small_disk, leave_kib):
    write(tmp_path / "t.csv", SMALL_TAXONOMY)
    rows = [(str(i), f"a shelter for cats number {i}", "AN1") for i in range(40)]
    rows += [(f"u{i}", f"our school and its dogs {i}", "") for i in range(300)]
    write_assets(tmp_path / "a.csv", rows)
    state = small_disk / "state"
    assert run(tmp_path).returncode == 0  # v1, and its pre-annotations
    before = pushed(state)
    rows += [(str(i), f"a hospital for dogs number {i}", "AN2;HE") for i in range(40, 80)]  # v2 is due
    rows += [(f"n{i}", f"a new cat club {i}", "") for i in range(300)]
    write_assets(tmp_path / "a.csv", rows)

    filler = fill(small_disk, leave_kib * 1024)
    full = run(tmp_path)
    err = full.stderr
    if full.returncode != 0:  # the space ran out somewhere
        assert full.returncode == 2 and "Traceback" not in err, err[-3000:]
        assert "no space left on its device" in err and "Fix: free space" in err, err[-3000:]
    current = (state / "models" / "CURRENT").read_text().strip()
    assert current in ("1", "2")
    assert json.loads((state / "models" / f"v{int(current):04d}" / "meta.json").read_text())  # still whole
    assert set(pushed(state)) >= set(before)  # every line whole (no partial batch), nothing pushed lost

    filler.unlink()
    again = run(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    final = pushed(state)
    unlabelled = {r[0] for r in rows if not r[2]}
    assert (state / "models" / "CURRENT").read_text().strip() == "2"
    assert {a for a, v in final if v == "v2"} == unlabelled  # every unlabelled asset pre-annotated by v2...
    assert max(final.values()) == 1  # ...once


def test_a_read_only_state_folder_is_explained_not_taken_for_a_damaged_ledger(tmp_path, small_disk):
    write(tmp_path / "t.csv", SMALL_TAXONOMY)
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1"), ("u1", "our cat rescue", "")])
    assert run(tmp_path).returncode == 0
    state = small_disk / "state"
    before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = run(tmp_path)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "cannot write there" in done.stderr and "Fix: mount it read-write" in done.stderr, done.stderr[-3000:]
    assert "move it aside" not in done.stderr  # the ledger is fine: the advice would lose it
    assert {p: p.read_bytes() for p in before} == before


def test_the_polling_worker_on_a_read_only_state_folder_says_so_before_its_first_beat(tmp_path, small_disk):
    """Found by the container trial (a read-only volume): the heartbeat, written before anything else, crashed with
    a traceback (exit 1) instead of the state folder's message (exit 2)."""
    write(tmp_path / "t.csv", SMALL_TAXONOMY)
    write_assets(tmp_path / "a.csv", [("1", "a shelter for cats", "AN1")])
    (small_disk / "state").mkdir()  # as a volume is: there, and read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = subprocess.run([CLI, "run", "--platform", "files", "--assets", str(tmp_path / "a.csv"), "--taxonomy",
                               str(tmp_path / "t.csv"), "--state", str(small_disk / "state")], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "CLASSIE_WORKER__METRICS_PORT": ""})
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "cannot write there" in done.stderr and "Fix: mount it read-write" in done.stderr



@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_state_folder_another_user_owns_is_refused_with_the_chown_that_mends_it():
    """A volume an earlier image's user left (the container trial's case, there end to end): as a user who may not
    write in it, the state folder's check, which the ledger and the heartbeat both run first, refuses it and names
    the `chown`; nothing in it is touched. Checked as uid 1234 (root may write anywhere, so it would pass), switched
    to in this process only for the call: this Python cannot be run by another user here."""
    from service.store.heartbeat import Heartbeat
    from service.store.state import StateError, StateStore

    volume = Path(tempfile.mkdtemp(prefix="classie-owner-", dir="/tmp"))  # pytest's own folders are root's only
    volume.chmod(0o755)
    state = volume / "state"
    state.mkdir()
    (state / "state.sqlite3").write_bytes(b"")  # root's, as the whole folder
    messages = []
    os.setegid(1234)
    os.seteuid(1234)
    try:
        for start in (lambda: StateStore(state / "state.sqlite3"), lambda: Heartbeat.started(state)):
            with pytest.raises(StateError) as refused:
                start()
            messages.append(str(refused.value))
    finally:
        os.seteuid(0)
        os.setegid(0)
    try:
        assert all("this user (1234) cannot write there" in m and "chown -R 10001:10001" in m for m in messages), (
            messages)
        assert (state / "state.sqlite3").read_bytes() == b"" and [p.name for p in state.iterdir()] == ["state.sqlite3"]
    finally:
        shutil.rmtree(volume)
