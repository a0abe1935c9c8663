"""Incremental pulls start [worker] cursor_overlap_seconds before the newest change the last pull saw: a change
stamped before it but visible only after that pull (a slow write, another server's clock) is still seen. On the real
Kili SDK against the emulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kili_emulator import KiliEmulator, format_timestamp, isolate_kili_sdk, parse_timestamp
from kili_project import fill, interface, ukcat_taxonomy
from service.app.factory import build_worker
from service.config import Secrets, load_settings
from service.cycle.worker import Worker, later, overlapped

KEY = "overlap-key"


@pytest.fixture
def emulator(tmp_path, monkeypatch):
    isolate_kili_sdk(monkeypatch, tmp_path / "home")
    with KiliEmulator(api_key=KEY, project_id="p1", json_interface=interface(ukcat_taxonomy())) as emu:
        yield emu


def worker(tmp_path, emulator: KiliEmulator, overlap: float) -> Worker:
    settings = load_settings(None, {
        "platform": "kili", "state_dir": str(tmp_path / "state"),
        "kili": {"project_id": "p1", "endpoint": emulator.endpoint},
        "model": {"min_examples": 100000},  # keyword rules only: this is about pulling
        "worker": {"cursor_overlap_seconds": overlap},
    })
    return build_worker(settings, Secrets(kili_api_key=KEY))


def test_a_change_stamped_before_the_cursor_is_still_pulled(tmp_path, emulator):
    fill(emulator, ukcat_taxonomy(), labelled=10, unlabelled=5)
    first = worker(tmp_path, emulator, overlap=0).run_once()
    assert first.complete_pull and first.written == 5
    # The push moved the pre-annotated assets' updatedAt: the next pull brings them and moves the cursor there (how
    # long after the first pull depends on the machine, so the late change is stamped from the cursor it settles at).
    settled = worker(tmp_path, emulator, overlap=0)
    assert settled.run_once().written == 0
    cursor = settled.state.remembered.pull_marks().cursor

    # Committed after that pull, stamped 3 s before its cursor: a pull from the cursor itself misses it...
    late = format_timestamp(parse_timestamp(cursor) - timedelta(seconds=3))
    emulator.add_asset("late-1", "A food bank for families in need", updated_at=late)
    missed = worker(tmp_path, emulator, overlap=0).run_once()
    assert not missed.complete_pull and missed.written == 0 and missed.unlabelled == 5

    # ...a pull that starts [worker] cursor_overlap_seconds earlier sees it, and pre-annotates it once.
    seen = worker(tmp_path, emulator, overlap=10).run_once()
    assert not seen.complete_pull and seen.unlabelled == 6 and seen.written == 1
    again = worker(tmp_path, emulator, overlap=10)
    assert again.state.remembered.pull_marks().cursor >= cursor  # the overlap never walks the cursor back
    assert again.run_once().written == 0


@pytest.mark.parametrize("cursor, expected", [
    ("2026-12-02T04:00:05.123Z", "2026-12-02T03:59:55.123Z"),  # Kili
    ("2026-12-02T04:00:05.123456Z", "2026-12-02T03:59:55.123456Z"),  # Label Studio
    ("2026-12-02T04:00:05+00:00", "2026-12-02T03:59:55+00:00"),
    ("not a time", "not a time"),  # a platform's opaque cursor is used as it is
])
def test_the_overlap_keeps_the_platforms_format(cursor, expected):
    assert overlapped(cursor, 10) == expected
    assert overlapped(cursor, 0) == cursor


@pytest.mark.parametrize("new, old, kept", [
    ("2026-12-02T04:00:05Z", "2026-12-02T04:00:09Z", "2026-12-02T04:00:09Z"),  # never back in time
    ("2026-12-02T04:00:09Z", "2026-12-02T04:00:05Z", "2026-12-02T04:00:09Z"),
    ("2026-12-02T04:00:09Z", None, "2026-12-02T04:00:09Z"),
    ("sha256:00aa", "sha256:ffee", "sha256:00aa"),  # a file's fingerprint is replaced, not compared
])
def test_the_cursor_kept_after_a_pull(new, old, kept):
    assert later(new, old) == kept


def test_once_a_pull_has_covered_the_overlap_the_next_ones_start_at_the_cursor(tmp_path, emulator):
    import time

    fill(emulator, ukcat_taxonomy(), labelled=10, unlabelled=5)
    assert worker(tmp_path, emulator, overlap=1).run_once().written == 5  # the push moves the 5 assets' updatedAt
    after_push = worker(tmp_path, emulator, overlap=1).run_once()
    assert after_push.pulled == 15  # the pushed 5 moved past the cursor; the 10 others were stamped within the overlap
    within = worker(tmp_path, emulator, overlap=1).run_once()
    assert within.pulled == 5  # still within the overlap of the cursor: read again
    time.sleep(1.2)
    covering = worker(tmp_path, emulator, overlap=1).run_once()
    assert covering.pulled == 5  # a second after the cursor was reached: late changes are in this pull...
    settled = worker(tmp_path, emulator, overlap=1).run_once()
    assert settled.pulled <= 1  # ...so the next starts at the cursor (the newest asset itself: updatedAt >= cursor)
    emulator.add_asset("new-1", "A food bank for families in need")
    moved = worker(tmp_path, emulator, overlap=1).run_once()
    assert moved.written == 1 and worker(tmp_path, emulator, overlap=1).run_once().pulled >= 1  # overlap again
