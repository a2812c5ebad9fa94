"""HTTP with bounded retries for the source and the partner: one policy, one place.

Transient: timeouts, connection errors, 5xx, 429 (honouring Retry-After), and a 2xx whose
JSON body is cut off. Everything else (2xx, other 4xx) is returned for the caller to judge.
Redirects are not followed: a partner URL that redirects elsewhere is refused, not obeyed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


# Issue 9: an answer larger than this is refused while it streams in, never held whole
# in memory (a page of 1000 orders is a few MB; the file source caps a record at 4 MB).
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class TransientHTTPError(RuntimeError):
    """Still failing after every attempt; the work stays waiting for the next run."""


class ResponseTooLarge(TransientHTTPError):
    """The answer exceeded the size cap; refused at once, not retried (the work that
    needed it waits, visibly, for the next run)."""


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
    **kwargs: Any,
) -> httpx.Response:
    """Send, retrying transient failures with exponential backoff and full jitter."""
    last = "no attempt made"
    for attempt in range(1, attempts + 1):
        delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
        try:
            response = _send_capped(client, method, url, max_bytes, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if response.status_code in TRANSIENT_STATUS:
                last = f"HTTP {response.status_code}"
                hinted = retry_after_seconds(response, max_delay)
                delay = hinted if hinted is not None else delay
            elif expect_json and response.is_success and not _json_ok(response):
                last = f"HTTP {response.status_code} with a body that is not complete JSON"
            else:
                return response
        if attempt < attempts:
            sleep(delay)
    raise TransientHTTPError(f"{method} {url} failed {attempts} times; last: {last}")


def _send_capped(
    client: httpx.Client, method: str, url: str, max_bytes: int, **kwargs: Any
) -> httpx.Response:
    """`client.request`, but the body is streamed and refused beyond `max_bytes`."""
    response = client.send(client.build_request(method, url, **kwargs), stream=True)
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(
                f"{method} {url}: the answer announces {int(declared)} bytes, more than the "
                f"limit of {max_bytes}; refused"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(
                    f"{method} {url}: the answer is larger than the limit of {max_bytes} "
                    "bytes; refused"
                )
            chunks.append(chunk)
        response._content = b"".join(chunks)  # what httpx's own read() does
    finally:
        response.close()
    return response


def _json_ok(response: httpx.Response) -> bool:
    if not response.content:
        return True
    try:
        response.json()
    except ValueError:
        return False
    return True
