from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ukcat"

SMALL_TAXONOMY = """code,name,parent_code,keywords,include_regex,exclude_regex
AN,Animals,,animal;pets,,
AN1,Cats,AN,cat;cats;feline,,
AN2,Dogs,AN,dog;dogs,,
HE,Health,,,\\b(health|hospital)\\b,mental health
HE1,Mental health,HE,mental health,,
ED,Education,,school;education,,
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


@pytest.fixture
def small_taxonomy(tmp_path: Path) -> Path:
    return write(tmp_path / "taxonomy.csv", SMALL_TAXONOMY)


def write_assets(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "text", "labels"])
        out.writerows(rows)
    return path


def ukcat_project_config(root: Path, model: str) -> Path:
    """root/config.toml: the UK-CAT taxonomy with its population facet, assets in root/assets.csv, state in
    root/state, and `model` as the [model] section's lines (small searches for the tests)."""
    return write(root / "config.toml", f"""
state_dir = "state"
[files]
assets = "assets.csv"
[taxonomy]
path = "{EXAMPLE / 'taxonomy.csv'}"
facet_roots = {{ population = ["BE"] }}
[model]
{model.strip()}
""")


def example_rows(name: str, limit: int | None = None) -> list[tuple[str, str, str]]:
    with (EXAMPLE / name).open(encoding="utf-8", newline="") as f:
        rows = [(r["id"], r["text"], r["labels"]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


# Codes that repeat at two levels and under two parents, as real coding schemes do: a Roman-numeral top level above
# lettered groups, where I and V are also group letters, A is a group under two parts, OTHER a leaf under two groups.
REPEATED_TAXONOMY = """code,name,parent_code,level,keywords,path
I,Part I,,1,,
V,Part V,,1,,
X,Part X,,1,,
A,Group A of part I,I,2,,
I,Group I of part V,V,2,,
V,Group V of part X,X,2,,
A,Group A of part X,X,2,,
A20,Animals,,3,animal;pets,I/A/A20
I10,Imaging,I,3,x-ray;scanner,
OTHER,Other in I/A,,3,miscellaneous,I/A/OTHER
OTHER,Other in V/I,I,3,sundry,
V5,Vaccines,V,3,vaccine,
"""


@pytest.fixture
def repeated_taxonomy(tmp_path: Path) -> Path:
    return write(tmp_path / "repeated.csv", REPEATED_TAXONOMY)


# ---- reading a worker's state folder as an operator would (the container tests, with or without an engine) ----

def heartbeat(state: Path) -> dict:
    """The worker's heartbeat file; {} while there is none or it is being replaced."""
    try:
        return json.loads((state / "worker.heartbeat.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file (the files platform's pre-annotations); [] when it does not exist yet."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def pushed_count(state: Path) -> int:
    """Pre-annotations the state ledger records as pushed."""
    with contextlib.closing(sqlite3.connect(state / "state.sqlite3")) as db:
        return db.execute("SELECT COUNT(*) FROM pushed").fetchone()[0]


class JsonHandler(BaseHTTPRequestHandler):
    """A loopback stub server's handler: `reply` sends a JSON body; requests are not logged."""

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback stub server on a free port, in a thread, for the block: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
