"""An HTTP proxy on loopback that injects faults in front of a real server: a seeded share of the requests is
answered 429 or 502, or has its connection dropped, either before the request reaches the server or after the server
has handled it (a write that landed, whose answer is lost). Scripted faults for given calls come first.

    with FaultProxy("http://127.0.0.1:8080", rate=0.1, seed=7) as proxy:
        proxy.script("POST", "/import/predictions", "502 after")   # the next such call lands, then fails
        ... point the client at proxy.url ...
        proxy.injected   # [(fault, method, path), ...]
"""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

FAULTS = ("429 before", "502 before", "drop before", "502 after", "drop after")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class FaultProxy:
    def __init__(self, upstream: str, rate: float = 0.1, seed: int = 0):
        self.upstream, self.rate = upstream.rstrip("/"), rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._scripted: list[tuple[str, str, str]] = []
        self.injected: list[tuple[str, str, str]] = []
        self.passed = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, method: str, path_part: str, fault: str) -> None:
        """The next `method` call whose path holds `path_part` gets `fault` (one of FAULTS)."""
        assert fault in FAULTS, fault
        with self._lock:
            self._scripted.append((method, path_part, fault))

    def fault_for(self, method: str, path: str) -> str | None:
        with self._lock:
            for i, (m, part, scripted) in enumerate(self._scripted):
                if m == method and part in path:
                    del self._scripted[i]
                    fault = scripted
                    break
            else:
                fault = self._random.choice(FAULTS) if self._random.random() < self.rate else None
            if fault:
                self.injected.append((fault, method, path))
            else:
                self.passed += 1
            return fault


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    session = requests.Session()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.fault_for(self.command, self.path)
            if fault in ("429 before", "502 before"):
                return self._answer(int(fault[:3]), b'{"detail": "injected"}', {"Retry-After": "0"})
            if fault == "drop before":
                return self._drop()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream = session.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                       allow_redirects=False, timeout=120)
            if fault == "502 after":
                return self._answer(502, b'{"detail": "injected after the write"}', {})
            if fault == "drop after":
                return self._drop()
            self._answer(upstream.status_code, upstream.content,
                         {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})

        def _answer(self, status: int, body: bytes, headers: dict) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drop(self) -> None:
            self.close_connection = True
            self.connection.shutdown(2)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

    return Handler
