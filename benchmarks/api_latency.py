"""/predict latency of `classie-automl serve`'s app on a real server (uvicorn, loopback), with a trained model.

    .venv/bin/python benchmarks/api_latency.py --state examples/ukcat/state   # after ./dev demo
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import requests
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.api import create_app  # noqa: E402
from service.config import ApiSettings  # noqa: E402
from service.registry import ModelRegistry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, default=ROOT / "examples" / "ukcat" / "state")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    registry = ModelRegistry(args.state / "models")
    if registry.current() is None:
        sys.exit(f"no model in {args.state}: run ./dev demo first")
    with (ROOT / "examples" / "ukcat" / "test.csv").open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    app = create_app(ApiSettings(), "bench", registry, lambda: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/predict"
    session = requests.Session()
    session.headers["Authorization"] = "Bearer bench"
    session.post(url, json={"tasks": [{"data": {"text": texts[0]}}]}).raise_for_status()  # loads the model
    for batch in (1, 20):
        times = []
        for i in range(args.requests):
            tasks = [{"id": j, "data": {"text": texts[(i * batch + j) % len(texts)]}} for j in range(batch)]
            started = time.perf_counter()
            session.post(url, json={"tasks": tasks}).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(json.dumps({"tasks_per_call": batch, "calls": len(times), "p50_ms": round(statistics.median(times), 1),
                          "p99_ms": round(times[int(0.99 * (len(times) - 1))], 1),
                          "max_ms": round(times[-1], 1), "model": registry.current().name}))
    server.should_exit = True


if __name__ == "__main__":
    main()
