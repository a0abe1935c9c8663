"""A worker cycle against a real Label Studio project of N tasks (not part of .ci/run).

    .venv/bin/python benchmarks/label_studio_cycle.py --tasks 3000

Starts Label Studio (tests/label_studio_server.py installs it in .ls-venv on first use), imports N UK-CAT charities
(a fifth with an annotation) in one request, then runs the worker: a first cycle (train with a small budget, push) and
`--no-change` cycles with nothing new (3 by default), each line saying its wall time, the HTTP requests the connector
sent, the bytes they fetched, the time the server took to answer them and the tasks pulled; then the median of the
no-change cycles. `--full-pull` makes each no-change cycle a complete pull (as every [worker] full_pull_seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import example_rows  # noqa: E402
from kili_project import ukcat_taxonomy  # noqa: E402
from label_studio_server import LabelStudioServer, ensure_label_studio  # noqa: E402


def config() -> str:
    tax = ukcat_taxonomy()

    def choice(code: str) -> str:
        kids = "".join(choice(c) for c in sorted(tax.children.get(code, [])))
        name = tax.nodes[code].name.replace("&", "and").replace('"', "'").replace("<", "")
        return f'<Choice value="{name}" alias="{code}">{kids}</Choice>'

    return ('<View><Text name="text" value="$text"/><Taxonomy name="subject" toName="text">'
            + "".join(choice(c) for c in sorted(tax.children[None])) + "</Taxonomy></View>")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--no-change", type=int, default=3, help="no-change cycles after the first")
    parser.add_argument("--full-pull", action="store_true", help="every no-change cycle a complete pull")
    args = parser.parse_args()
    from service.app.factory import build_worker
    from service.config import Secrets, load_settings

    tax = ukcat_taxonomy()
    rows = (example_rows("train.csv") + example_rows("test.csv"))[: args.tasks]
    tasks = []
    for i, (_, text, labels) in enumerate(rows):
        task: dict = {"data": {"text": text}}
        if i % 5 == 0:
            paths = [list(reversed([c, *tax.ancestors(c)])) for c in sorted(set(labels.split(";")) & set(tax.nodes))]
            task["annotations"] = [{"result": [{"from_name": "subject", "to_name": "text", "type": "taxonomy",
                                                "value": {"taxonomy": paths}}]}]
        tasks.append(task)
    ensure_label_studio()
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as scratch, LabelStudioServer(Path(scratch) / "ls") as ls:
        work = Path(scratch)  # the server's data and the worker's state, removed once the server has stopped
        ls.start()
        project = ls.client.create_project("bench", config())["id"]
        started = time.perf_counter()
        ls.client.import_tasks(project, tasks)
        print(json.dumps({"tasks": len(tasks), "import_s": round(time.perf_counter() - started, 1)}))
        settings = load_settings(None, {"platform": "label-studio", "state_dir": str(work / "state"),
                                        "label_studio": {"project_id": project, "url": ls.url},
                                        "model": {"budget_seconds": 60},
                                        "worker": {"full_pull_seconds": 0 if args.full_pull else 3600}})
        worker = build_worker(settings, Secrets(label_studio_api_key=ls.token))
        sent: list[tuple[str, int, float]] = []  # request, bytes of the answer, seconds until its headers came
        worker.connector.client.http.hooks["response"].append(
            lambda r, *a, **k: sent.append((f"{r.request.method} {r.url}", len(r.content), r.elapsed.total_seconds())))
        walls = []
        for n in range(1 + args.no_change):
            before = len(sent)
            started = time.perf_counter()
            report = worker.run_once()
            wall = time.perf_counter() - started
            calls = sent[before:]
            if n:
                walls.append(wall)
            print(json.dumps({"cycle": "no-change" if n else "first", "wall_s": round(wall, 2),
                              "requests": len(calls), "bytes": sum(b for _, b, _ in calls),
                              "server_s": round(sum(s for _, _, s in calls), 2), "pulled": report.pulled,
                              "complete_pull": report.complete_pull, "trained": report.trained,
                              "pushed": report.written, "timings": {k: round(v, 2) for k, v in report.timings.items()},
                              "calls": dict(Counter(c.split("?")[0] for c, _, _ in calls))}))
        if walls:
            print(json.dumps({"no_change_median_s": round(statistics.median(walls), 2), "cycles": len(walls)}))


if __name__ == "__main__":
    main()
