"""Measure the Kili path against the local emulator (not part of .ci/run: minutes, not seconds).

    .venv/bin/python benchmarks/kili_cycle.py --assets 5000            # no-change cycle cost, push rate
    .venv/bin/python benchmarks/kili_cycle.py --assets 20000 --memory  # peak memory of a cycle (subprocess)

The emulator runs in this process; the worker runs in process (or, with --memory, as the real CLI in a child
process whose peak RSS is read after it exits). Texts are UK-CAT charities, repeated with a suffix past 4,203;
a fifth of the assets carry a human (DEFAULT) label.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
HOME = Path(tempfile.mkdtemp(prefix="kili-bench-"))
os.environ.update(HOME=str(HOME), XDG_CACHE_HOME=str(HOME / ".cache"), KILI_DISABLE_TQDM="1",
                  KILI_API_KEY="bench-key")

from conftest import example_rows  # noqa: E402
from kili_emulator import KiliEmulator  # noqa: E402
from kili_project import answer, interface, ukcat_taxonomy  # noqa: E402


def fill(emulator: KiliEmulator, n: int) -> None:
    taxonomy = ukcat_taxonomy()
    rows = example_rows("train.csv") + example_rows("test.csv")
    for i in range(n):
        org_id, text, labels = rows[i % len(rows)]
        asset_id = f"a{i:06d}"
        emulator.add_asset(asset_id, text if i < len(rows) else f"{text} #{i}")
        if i % 5 == 0:
            emulator.add_label(asset_id, "DEFAULT", answer(taxonomy, {c for c in labels.split(";") if c in taxonomy}))


def config(state: Path, emulator: KiliEmulator, budget: int, keywords_only: bool) -> Path:
    path = state.parent / "bench.toml"
    model = "min_examples = 100000" if keywords_only else f"budget_seconds = {budget}"
    path.write_text(f'platform = "kili"\nstate_dir = "{state}"\n[kili]\nproject_id = "p1"\n'
                    f'endpoint = "{emulator.endpoint}"\n[model]\n{model}\n')
    return path


def in_process(emulator: KiliEmulator, state: Path, keywords_only: bool, budget: int) -> None:
    from service.app.factory import build_worker
    from service.config import load_settings, read_secrets

    settings = load_settings(config(state, emulator, budget, keywords_only))
    worker = build_worker(settings, read_secrets())
    connector = worker.connector
    pushing = [0.0]
    push = connector.push

    def timed_push(items, version):
        started = time.perf_counter()
        try:
            return push(items, version)
        finally:
            pushing[0] += time.perf_counter() - started

    connector.push = timed_push
    for name in ("first", "the cycle after a push", "past the overlap", "no-change"):
        if name == "past the overlap":  # the pull that reads, once more, what changed in the cursor's last seconds
            time.sleep(settings.worker.cursor_overlap_seconds + 1)
        before, pushing[0] = len(emulator.requests), 0.0
        started = time.perf_counter()
        report = worker.run_once()
        wall = time.perf_counter() - started
        calls = [r["operation"] for r in emulator.requests[before:]]
        print(json.dumps({"cycle": name, "wall_s": round(wall, 2), "api_calls": len(calls),
                          "graphql_calls": sum(c != "files" for c in calls), "text_downloads": calls.count("files"),
                          "pulled": report.pulled, "pushed": report.written, "trained": report.trained,
                          "prioritised": report.prioritised, "priority_calls": calls.count("setAssetsPriority"),
                          "push_s": round(pushing[0], 2),
                          "pushed_per_s": round(report.written / pushing[0], 1) if pushing[0] else None,
                          "timings": {k: round(v, 2) for k, v in report.timings.items()}}))
    dry_run(emulator, worker)


def dry_run(emulator: KiliEmulator, worker) -> None:
    """`run --once --dry-run` after humans labelled 20 assets and 50 texts changed: read calls only."""
    taxonomy = ukcat_taxonomy()
    unlabelled = [f"a{i:06d}" for i in range(1, 400) if i % 5][:70]
    for asset_id in unlabelled[:50]:
        emulator.set_text(asset_id, f"a church choir and bible study group, record {asset_id}")
    for asset_id in unlabelled[50:]:
        emulator.add_label(asset_id, "DEFAULT", answer(taxonomy, {"ED101"}))
    before = len(emulator.requests)
    started = time.perf_counter()
    run = worker.dry_run()
    calls = [r["operation"] for r in emulator.requests[before:]]
    print(json.dumps({"cycle": "dry run", "wall_s": round(time.perf_counter() - started, 2), "api_calls": len(calls),
                      "mutations": emulator.writes(before), "operations": sorted(set(calls)),
                      "would_train": run.would_train, "would_push": run.would_push,
                      "changing_prefill": len(run.changes), "same_codes": run.unchanged,
                      "priorities_changed": run.priorities_changed}))


def as_cli(emulator: KiliEmulator, state: Path, keywords_only: bool, budget: int) -> None:
    cli = str(Path(sys.executable).parent / "classie-automl")
    started = time.perf_counter()
    done = subprocess.run([cli, "run", "--once", "--config", str(config(state, emulator, budget, keywords_only))],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(done.stdout[-1500:])
    if done.returncode:
        print(done.stderr[-3000:])
    print(json.dumps({"cycle": "first (CLI)", "wall_s": round(wall, 1), "exit": done.returncode,
                      "peak_rss_mb_largest_process": round(usage.ru_maxrss / 1024, 1),
                      "api_calls": len(emulator.requests)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=int, default=5000)
    parser.add_argument("--memory", action="store_true", help="run the cycle as the CLI and report its peak RSS")
    parser.add_argument("--train", action="store_true", help="a real search instead of keyword rules only")
    parser.add_argument("--budget", type=int, default=60)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="kili-bench-state-")) / "state"
    with KiliEmulator(api_key="bench-key", project_id="p1", json_interface=interface(ukcat_taxonomy())) as emu:
        started = time.perf_counter()
        fill(emu, args.assets)
        print(json.dumps({"assets": args.assets, "filled_s": round(time.perf_counter() - started, 1)}))
        (as_cli if args.memory else in_process)(emu, state, not args.train, args.budget)


if __name__ == "__main__":
    main()
