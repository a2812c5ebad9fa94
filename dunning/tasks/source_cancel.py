"""The cancellation call of the `cancellation` option: POST /v1/orders/{id}/cancel."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from dunning.tasks.partner import Outcome, call


def is_http(source_url: str) -> bool:
    return source_url.startswith(("http://", "https://"))


def cancel_order(
    client: httpx.Client, key: str, order_id: str, case_reference: str, **kw
) -> Outcome:
    body = {"reason": "dunning_cancellation", "case_reference": case_reference}
    return call(
        client, "POST", f"/v1/orders/{quote(order_id, safe='')}/cancel", key, body, (200,), **kw
    )
