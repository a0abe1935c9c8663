"""/predict under load: the real `classie-automl serve` (its own process) on loopback, N concurrent keep-alive
clients for a fixed time per task count, then a webhook storm.

    ./dev demo                                   # a trained model in examples/ukcat/state
    .venv/bin/python benchmarks/api_load.py      # 1 client, then 32, per task count (1 and 20); 1,000 webhooks

Prints one JSON line per phase: calls, throughput, p50/p99 latency, errors, what a /health probe saw meanwhile, and
the server's resident memory before and after (from /proc). The server is a separate process: a client in the
server's own process shares its interpreter lock and measures that instead (~44 ms even for /health).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_server(config: Path, debounce: float, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CLASSIE_API_TOKEN": TOKEN, "CLASSIE_API__DEBOUNCE_SECONDS": str(debounce)}
    cli = Path(sys.executable).with_name("classie-automl")
    with log.open("w") as out:  # a file, not a pipe: a pipe nobody reads fills up and stalls the server
        server = subprocess.Popen([str(cli), "serve", "--config", str(config), "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).json().get("model_version"):
                return server, url
        except requests.RequestException:
            pass
        if server.poll() is not None:
            sys.exit(f"serve ended: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    server.kill()
    sys.exit("serve did not answer /health within 120 s")


def load(url: str, texts: list[str], tasks_per_call: int, clients: int, seconds: float) -> dict:
    """`clients` threads, each with its own keep-alive session, calling /predict back to back for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {TOKEN}"
        i = k
        while time.monotonic() < stop:
            body = {"tasks": [{"data": {"text": texts[(i * tasks_per_call + j) % len(texts)]}}
                              for j in range(tasks_per_call)]}
            started = time.perf_counter()
            try:
                answer = session.post(f"{url}/predict", json=body, timeout=60)
                ok = answer.status_code == 200 and len(answer.json()["results"]) == tasks_per_call
            except requests.RequestException:
                ok = False
            latencies[k].append((time.perf_counter() - started) * 1000)
            errors[k] += not ok
            i += clients

    health: list[float] = []

    def probe() -> None:  # what a health check sees meanwhile (Docker's HEALTHCHECK, Label Studio's /health)
        session = requests.Session()
        while time.monotonic() < stop:
            started = time.perf_counter()
            session.get(f"{url}/health", timeout=60)
            health.append((time.perf_counter() - started) * 1000)
            time.sleep(0.25)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)] + [threading.Thread(target=probe)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    times = sorted(x for per_client in latencies for x in per_client)
    return {"tasks_per_call": tasks_per_call, "clients": clients, "seconds": round(elapsed, 1), "calls": len(times),
            "calls_per_s": round(len(times) / elapsed, 1), "tasks_per_s": round(len(times) * tasks_per_call / elapsed),
            "p50_ms": round(statistics.median(times), 1), "p99_ms": round(percentile(times, 0.99), 1),
            "errors": sum(errors), "health_p50_ms": round(statistics.median(health), 1),
            "health_p99_ms": round(percentile(sorted(health), 0.99), 1)}


def percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


def storm(url: str, events: int, seconds: float, clients: int = 8) -> dict:
    """`events` annotation webhooks spread over `seconds`; /metrics then says how many cycles they started."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    statuses: list[int] = []

    def client(k: int) -> None:
        session = requests.Session()
        mine = range(k, events, clients)
        for n, _ in enumerate(mine):
            time.sleep(max(0.0, started + n * seconds / len(mine) - time.monotonic()))
            statuses.append(session.post(f"{url}/webhook", json={"action": "ANNOTATION_CREATED"}, headers=auth,
                                         timeout=30).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"webhook_events": len(statuses), "seconds": round(time.monotonic() - started, 1),
            "non_200": sum(s != 200 for s in statuses)}


def scraped(url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "ukcat" / "config.toml")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60, help="per task count, with --clients clients")
    parser.add_argument("--baseline-seconds", type=float, default=20, help="per task count, with one client")
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--storm-seconds", type=float, default=10)
    parser.add_argument("--debounce", type=float, default=3, help="the API's debounce_seconds during the run")
    parser.add_argument("--server-log", type=Path, default=Path("api_load_server.log"))
    args = parser.parse_args()
    with (ROOT / "examples" / "ukcat" / "test.csv").open(encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    server, url = start_server(args.config, args.debounce, args.server_log)
    try:
        requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": texts[0]}}]},
                      headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120).raise_for_status()  # loads it
        for tasks_per_call, clients, seconds in ((1, 1, args.baseline_seconds), (1, args.clients, args.seconds),
                                                 (20, 1, args.baseline_seconds), (20, args.clients, args.seconds)):
            before = rss_mib(server.pid)
            figures = load(url, texts, tasks_per_call, clients, seconds)
            print(json.dumps({**figures, "rss_mib_before": round(before), "rss_mib_after": round(rss_mib(server.pid)),
                              "model": requests.get(f"{url}/health").json()["model_version"]}), flush=True)
        cycles_before = scraped(url, "classie_cycles_total") + scraped(url, "classie_errors_total")
        figures = storm(url, args.events, args.storm_seconds)
        time.sleep(args.debounce + 2)
        deadline = time.monotonic() + 900  # the cycle it started trains on the demo (minutes)
        while time.monotonic() < deadline:
            cycles = scraped(url, "classie_cycles_total") + scraped(url, "classie_errors_total") - cycles_before
            if cycles:
                break
            time.sleep(2)
        time.sleep(args.debounce + 2)  # a second cycle would have been scheduled by now
        cycles = scraped(url, "classie_cycles_total") + scraped(url, "classie_errors_total") - cycles_before
        print(json.dumps({**figures, "cycles_started": cycles}), flush=True)
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
