"""A threaded loopback HTTP server in the background, with JSON helpers and fault injection."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Faults:
    """Injected failures, each a probability per request (0..1); seeded for repeatability."""

    error_5xx: float = 0.0
    rate_limit_429: float = 0.0
    retry_after_seconds: int = 1
    slow: float = 0.0
    slow_seconds: float = 5.0
    reset: float = 0.0
    truncated: float = 0.0
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability


class JsonHandler(BaseHTTPRequestHandler):
    """Base handler: subclasses implement `route(method, path, query, body) -> (status, obj)`."""

    server: LoopbackServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests and demos
        pass

    def _handle(self, method: str) -> None:
        from urllib.parse import parse_qs, urlsplit

        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            # The client went away mid-request (a killed run): nothing of it is acted on.
            self.close_connection = True
            return
        faults = self.server.faults
        with self.server.lock:
            inject_reset = faults.draw(faults.reset)
            inject_5xx = faults.draw(faults.error_5xx)
            inject_429 = faults.draw(faults.rate_limit_429)
            inject_slow = faults.draw(faults.slow)
            inject_truncated = faults.draw(faults.truncated)
        if inject_reset:
            self.close_connection = True
            self.connection.close()
            return
        if inject_slow:
            time.sleep(faults.slow_seconds)
        if inject_5xx:
            return self.send_json(503, {"error": "injected fault"})
        if inject_429:
            return self.send_json(
                429, {"error": "slow down"}, {"Retry-After": str(faults.retry_after_seconds)}
            )
        token = self.server.token
        if token and self.headers.get("Authorization") != f"Bearer {token}":
            return self.send_json(401, {"error": "bad or missing bearer token"})
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self.send_json(400, {"error": "body is not JSON"})
        status, payload, headers = self.route(method, url.path, query, body)
        self.send_json(status, payload, headers, truncate=inject_truncated)

    def route(self, method: str, path: str, query: dict[str, str], body: Any):
        return 404, {"error": "not found"}, {}

    def send_json(
        self,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, default=str).encode()
        if truncate:
            data = data[: max(1, len(data) // 2)]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[JsonHandler], port: int, token: str | None, faults: Faults):
        super().__init__(("127.0.0.1", port), handler)
        self.token = token
        self.faults = faults
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
