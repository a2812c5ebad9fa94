"""Client of the collection partner's claims API (partner-api.openapi.yaml).

Each call carries the action's idempotency key; the claim's `reference` is the case's
stable key. Transient failures are retried here with backoff and jitter (bounded); what
is still failing after that comes back as `transient` and the action stays pending for the
next run. A 4xx is `failed`, with the partner's message, and is not retried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from dunning.tasks.http_client import (
    BadAnswer,
    DeadlineExceeded,
    TokenRefused,
    TransientHTTPError,
    json_body,
    request_with_retries,
    where,
)

DONE, FAILED, TRANSIENT = "done", "failed", "transient"


@dataclass
class Outcome:
    status: str  # done | failed | transient
    response: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _message(response: httpx.Response) -> str:
    try:
        body = json_body(response, "partner")
    except BadAnswer:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(body, dict) and body.get("fields"):
        fields = "; ".join(f"{k}: {v}" for k, v in body["fields"].items())
        return f"HTTP {response.status_code}: {body.get('error', 'invalid')} ({fields})"
    return f"HTTP {response.status_code}: {response.text[:300]}"


def call(
    client: httpx.Client,
    method: str,
    url: str,
    key: str,
    body: dict[str, Any] | None,
    ok: tuple[int, ...],
    attempts: int = 4,
    base_delay: float = 0.2,
) -> Outcome:
    try:
        response = request_with_retries(
            client,
            method,
            url,
            attempts=attempts,
            base_delay=base_delay,
            max_delay=5.0,
            json=body,
            headers={"Idempotency-Key": key},
        )
    except TransientHTTPError as exc:
        return Outcome(TRANSIENT, error=str(exc))
    if response.status_code in ok:
        try:
            data = json_body(response, "partner") if response.content else {}
        except BadAnswer:
            data = {}
        return Outcome(DONE, data if isinstance(data, dict) else {"body": data})
    if response.status_code == 401:
        # A wrong token is the installation's mistake, not the claim's: keep it waiting.
        return Outcome(TRANSIENT, error=_message(response))
    return Outcome(FAILED, error=_message(response))


def hand_over(client: httpx.Client, key: str, claim: dict[str, Any], **kw: Any) -> Outcome:
    return call(client, "POST", "/v1/claims", key, claim, (200, 201), **kw)


def request_court(client: httpx.Client, key: str, claim_id: str, **kw: Any) -> Outcome:
    return call(
        client, "POST", f"/v1/claims/{claim_id}/court-proceedings", key, {}, (200, 202), **kw
    )


def report_payment(
    client: httpx.Client, key: str, claim_id: str, amount: str, paid_at: str, **kw: Any
) -> Outcome:
    body = {"amount": amount, "paid_at": paid_at}
    return call(client, "POST", f"/v1/claims/{claim_id}/payments", key, body, (200, 201), **kw)


def add_items(
    client: httpx.Client, key: str, claim_id: str, items: list[dict[str, Any]], **kw: Any
) -> Outcome:
    """Items that arose after handover (a further installment, interest, costs). The same
    key again adds nothing; a claim recalled, closed or paid answers 409 (failed)."""
    body = {"items": items}
    return call(client, "POST", f"/v1/claims/{claim_id}/items", key, body, (200,), **kw)


def recall(client: httpx.Client, key: str, claim_id: str, reason: str, **kw: Any) -> Outcome:
    return call(
        client, "POST", f"/v1/claims/{claim_id}/recall", key, {"reason": reason}, (200,), **kw
    )


def list_updates(
    client: httpx.Client, updated_since: str | None, deadline: float | None = None
) -> list[dict[str, Any]]:
    """Every claim changed after `updated_since`, oldest change first (all pages).

    The whole read ends by `deadline` (a `time.time()` instant) and never follows a cursor
    it has seen: a partner that pages in circles or without end is one clear error.
    Raises only TransientHTTPError (and its kinds): the steps go on without the updates."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    what = where(client, "GET", "/v1/claims")
    while True:
        if deadline is not None and time.time() >= deadline:
            raise DeadlineExceeded(
                f"{what}: paging did not end before the read deadline "
                f"(DUNNING_READ_DEADLINE_SECONDS) after {len(seen) + 1} page(s)"
            )
        params: dict[str, str] = {}
        if updated_since:
            params["updated_since"] = updated_since
        if cursor:
            params["cursor"] = cursor
        response = request_with_retries(
            client, "GET", "/v1/claims", params=params, deadline=deadline
        )
        status = response.status_code
        if status in (401, 403):
            raise TokenRefused(
                f"{what}: the partner refused the token (HTTP {status}); check "
                "DUNNING_PARTNER_TOKEN",
                status,
            )
        if status != 200:
            raise BadAnswer(f"{what}: the partner answered HTTP {status}", status)
        page = json_body(response, what)
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise BadAnswer(f"{what}: a page without an 'items' list", status)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items
        if not isinstance(cursor, str):
            raise BadAnswer(f"{what}: a next_cursor that is not a string", status)
        if cursor in seen:
            raise BadAnswer(
                f"{what}: the partner sent a next_cursor it had sent before (a cycle); "
                "paging would never end",
                status,
            )
        seen.add(cursor)
