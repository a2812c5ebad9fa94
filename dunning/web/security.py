"""Sessions, CSRF, login rate limit and security headers of the web area. No database."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

SESSION_COOKIE = "dunning_session"
LOGIN_CSRF_COOKIE = "dunning_login_csrf"
SESSION_SECONDS = 12 * 3600

# No inline script, no script at all; styles from our own file only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cache-control", b"no-store"),
]


class Signer:
    """Signs session cookies and derives their CSRF tokens with one secret key."""

    def __init__(self, key: bytes | None = None):
        self.key = key or secrets.token_bytes(32)

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def session_value(self, token_id: int, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        body = f"{token_id}.{issued}.{secrets.token_hex(8)}"
        return f"{body}.{self._mac('session|' + body)}"

    def session_token_id(self, value: str | None, now: float | None = None) -> int | None:
        """The token id of a valid, unexpired session cookie, else None."""
        if not value or len(value) > 200:
            return None
        body, _, mac = value.rpartition(".")
        if not body or not hmac.compare_digest(mac, self._mac("session|" + body)):
            return None
        token_id, issued, _nonce = [*body.split("."), "", "", ""][:3]
        try:
            age = (now if now is not None else time.time()) - int(issued)
            return int(token_id) if 0 <= age <= SESSION_SECONDS else None
        except ValueError:
            return None

    def csrf_for(self, session_value: str) -> str:
        return self._mac("csrf|" + session_value)[:40]

    def csrf_ok(self, session_value: str | None, given: str | None) -> bool:
        if not session_value or not given:
            return False
        return hmac.compare_digest(self.csrf_for(session_value), given)


class RateLimiter:
    """At most `limit` attempts per `window` seconds per key (a client address)."""

    def __init__(self, limit: int = 10, window: float = 60.0):
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            if len(self._hits) > 10_000:  # forget idle clients
                for k in [k for k, v in self._hits.items() if not v]:
                    del self._hits[k]
            return True


ASGIApp = Callable[..., Awaitable[None]]


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
