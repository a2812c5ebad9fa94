"""HTTP with bounded retries for the source and the partner: one policy, one place.

Transient: timeouts, connection errors, 5xx, 429 (honouring Retry-After), and a 2xx whose
JSON body is cut off. Everything else (2xx, other 4xx) is returned for the caller to judge.
Redirects are not followed: a partner URL that redirects elsewhere is refused, not obeyed.

Issue 19: every error raised here is the project's own, built from the method, the URL
without its query and the status. httpx's errors keep the request, `Authorization`
header included, and Prefect pickles and logs what a task raises: they never leave here.
Every call has a wall-clock deadline (httpx's read timeout is per chunk: a body that
drips one byte a second would otherwise never end).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


# Issue 9: an answer larger than this is refused while it streams in, never held whole
# in memory (a page of 1000 orders is a few MB; the file source caps a record at 4 MB).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
# A call without a deadline of its own (a partner POST) still ends within this.
DEFAULT_CALL_SECONDS = 300.0
MAX_JSON_DEPTH = 1024  # orjson's own limit; deeper answers are refused, never recursed into


class TransientHTTPError(RuntimeError):
    """Still failing after every attempt; the work stays waiting for the next run.

    Carries only text: the method, the URL without query, the status (never a request)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ResponseTooLarge(TransientHTTPError):
    """The answer exceeded the size cap; refused at once, not retried (the work that
    needed it waits, visibly, for the next run)."""


class DeadlineExceeded(TransientHTTPError):
    """The call (or the whole paged read) did not end within its wall-clock deadline."""


class BadAnswer(TransientHTTPError):
    """The peer answered, but not usably: an unexpected status, JSON nested too deep, a
    page without items, a cursor that leads back. Not retried."""


class TokenRefused(BadAnswer):
    """HTTP 401/403: the peer refused our token."""


def make_client(base_url: str, token: SecretStr | str | None, timeout: float) -> httpx.Client:
    headers = {"User-Agent": "dunning/0.1"}
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        follow_redirects=False,
        verify=True,
    )


def where(client: httpx.Client, method: str, url: str) -> str:
    """`GET http://host:port/path`: what an error may name (no query, no user or password)."""
    u = client.base_url.join(url)
    port = f":{u.port}" if u.port else ""
    return f"{method} {u.scheme}://{u.host}{port}{u.path}"


def retry_after_seconds(response: httpx.Response, cap: float) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, cap))


def request_with_retries(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    attempts: int = 5,
    base_delay: float = 0.2,
    max_delay: float = 30.0,
    expect_json: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    max_bytes: int = MAX_RESPONSE_BYTES,
    deadline: float | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """Send, retrying transient failures with exponential backoff and full jitter.

    `deadline` (a `time.time()` instant) bounds the call and its retries; without one,
    DEFAULT_CALL_SECONDS from now."""
    deadline = deadline if deadline is not None else time.time() + DEFAULT_CALL_SECONDS
    what = where(client, method, url)
    last = "no attempt made"
    for attempt in range(1, attempts + 1):
        delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
        left = deadline - time.time()
        if left <= 0:
            break
        try:
            response = _send_within(client, method, url, max_bytes, left, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if response.status_code in TRANSIENT_STATUS:
                last = f"HTTP {response.status_code}"
                hinted = retry_after_seconds(response, max_delay)
                delay = hinted if hinted is not None else delay
            elif expect_json and response.is_success and not _json_ok(response, what):
                last = f"HTTP {response.status_code} with a body that is not complete JSON"
            else:
                return response
        if attempt < attempts:
            if time.time() + delay >= deadline:
                break
            sleep(delay)
    else:
        raise TransientHTTPError(f"{what} failed {attempts} times; last: {last}")
    raise DeadlineExceeded(f"{what}: no complete answer before the deadline; last: {last}")


def _send_within(
    client: httpx.Client, method: str, url: str, max_bytes: int, seconds: float, **kwargs: Any
) -> httpx.Response:
    """`_send_capped` in a helper thread, given up after `seconds` of wall-clock time.

    The thread is left behind: it ends with an error at the peer's next byte, or when
    the caller closes the client (every caller does, right after a deadline)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["response"] = _send_capped(client, method, url, max_bytes, **kwargs)
        except BaseException as exc:  # handed over below
            box["error"] = exc

    worker = threading.Thread(target=work, name="http-call", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise DeadlineExceeded(
            f"{where(client, method, url)}: no complete answer before the deadline "
            f"({seconds:.1f} s were left); given up"
        )
    if "error" in box:
        raise box.pop("error")
    return box["response"]


def _send_capped(
    client: httpx.Client, method: str, url: str, max_bytes: int, **kwargs: Any
) -> httpx.Response:
    """`client.request`, but the body is streamed and refused beyond `max_bytes`."""
    response = client.send(client.build_request(method, url, **kwargs), stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(
                f"{where(client, method, url)}: the answer announces {int(declared)} bytes, "
                f"more than the limit of {max_bytes}; refused"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(
                    f"{where(client, method, url)}: the answer is larger than the limit of "
                    f"{max_bytes} bytes; refused"
                )
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what httpx's own read() does
    finally:
        response.close()
    return response


def parse_json(content: bytes, what: str) -> Any:
    """orjson with its depth limit; a page nested 10,000 deep is one clear error, not a
    RecursionError. A body that is merely not JSON raises ValueError (cut off: retried)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        deep = str(exc).startswith("depth limit")
        reason = str(exc)
    if deep:
        raise BadAnswer(f"{what}: the answer nests deeper than {MAX_JSON_DEPTH} levels; refused")
    raise ValueError(f"{what}: the answer is not JSON ({reason})")


def json_body(response: httpx.Response, what: str) -> Any:
    """The parsed answer; BadAnswer when it is not (complete) JSON."""
    try:
        return parse_json(response.content, what)
    except ValueError as exc:
        reason = str(exc)
    raise BadAnswer(reason, response.status_code)


def _json_ok(response: httpx.Response, what: str) -> bool:
    if not response.content:
        return True
    try:
        parse_json(response.content, what)
    except ValueError:
        return False
    return True
