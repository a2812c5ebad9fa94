"""A local orders API (contracts/source-api.openapi.yaml) for demos and tests.

Serves order records from memory or a JSON Lines file: `GET /v1/orders` pages them oldest
change first (keyset cursor over (updated_at, order_id); `updated_since` is exclusive);
`POST /v1/orders/{id}/cancel` cancels with an Idempotency-Key. Faults (5xx, 429 with
Retry-After, slow answers, resets, cut-off bodies) come from the `Faults` of http.py.

    server = start(records, token="secret")      # in a background thread
    server.url, server.cancel_calls, server.cancelled
    server.refuse_cancel = lambda record: "why" or None   # 422 for the orders it names
    server.stop()

    python -m dunning.servers.orders_api --data shop.jsonl --port 8766 --token secret
"""

from __future__ import annotations

import base64
import bisect
import gzip
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from dunning.servers.http import Faults, JsonHandler, LoopbackServer

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def _moment(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return EPOCH
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    return EPOCH


def _encode_cursor(key: tuple[datetime, str]) -> str:
    text = f"{key[0].isoformat()}|{key[1]}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, oid = text.partition("|")
        return datetime.fromisoformat(moment), oid
    except (ValueError, UnicodeDecodeError):
        return None


class OrdersHandler(JsonHandler):
    server: OrdersApiServer

    def route(self, method: str, path: str, query: dict[str, str], body: Any):
        if method == "GET" and path == "/v1/orders":
            return self.server.page(query)
        parts = path.strip("/").split("/")
        is_cancel = len(parts) == 4 and (parts[0], parts[1], parts[3]) == ("v1", "orders", "cancel")
        if method == "POST" and is_cancel:
            return self.server.cancel(parts[2], self.headers.get("Idempotency-Key"), body)
        return 404, {"error": f"no route {method} {path}"}, {}

    def send_json(self, status, payload, headers=None, truncate=False) -> None:
        """Counts every answer by status; a page is sent as the bytes it was cached as."""
        with self.server.data_lock:
            self.server.statuses[status] = self.server.statuses.get(status, 0) + 1
        super().send_json(status, payload, headers, truncate)


class OrdersApiServer(LoopbackServer):
    def __init__(
        self,
        records: Iterable[Any],
        port: int = 0,
        token: str | None = None,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(OrdersHandler, port, token, faults or Faults())
        self.data_lock = threading.Lock()
        self.records: dict[str, Any] = {}  # key -> record (key: order_id, or #n if none)
        self.encoded: dict[str, bytes] = {}
        self.keys: list[tuple[datetime, str]] = []  # sorted (updated_at, key)
        self.key_of: dict[str, tuple[datetime, str]] = {}
        self.cancel_calls: list[tuple[str, str | None]] = []
        self.cancelled: dict[str, str] = {}
        # Orders the platform will not cancel through the API (422 with the reason).
        self.refuse_cancel: Callable[[dict[str, Any]], str | None] = lambda record: None
        self.page_calls = 0
        self.statuses: dict[int, int] = {}  # HTTP status -> answers sent (faults included)
        for n, record in enumerate(records):
            self._put(record, n)
        self.keys.sort()

    # --- data ---------------------------------------------------------------------------

    def _put(self, record: Any, n: int, sort: bool = False) -> None:
        oid = record.get("order_id") if isinstance(record, dict) else None
        key = oid if isinstance(oid, str) else f"#{n}"
        old = self.key_of.pop(key, None)
        if old is not None:
            i = bisect.bisect_left(self.keys, old)
            if i < len(self.keys) and self.keys[i] == old:
                del self.keys[i]
        entry = (_moment(record.get("updated_at") if isinstance(record, dict) else None), key)
        self.records[key] = record
        self.encoded[key] = orjson.dumps(record)
        self.key_of[key] = entry
        if sort:
            bisect.insort(self.keys, entry)
        else:
            self.keys.append(entry)

    def upsert(self, record: dict[str, Any]) -> None:
        """Add or replace one order (tests change the shop while it is being served)."""
        with self.data_lock:
            self._put(record, len(self.records), sort=True)

    def page(self, query: dict[str, str]):
        try:
            limit = int(query.get("limit", "500"))
        except ValueError:
            return 400, {"error": "limit must be an integer"}, {}
        if not 1 <= limit <= 1000:
            return 400, {"error": "limit must be between 1 and 1000"}, {}
        with self.data_lock:
            self.page_calls += 1
            start = 0
            since = query.get("updated_since")
            if since:
                try:
                    moment = datetime.fromisoformat(since.replace(" ", "+"))
                except ValueError:
                    return 400, {"error": "updated_since is not an ISO timestamp"}, {}
                if moment.tzinfo is None:
                    return 400, {"error": "updated_since needs a UTC offset"}, {}
                # exclusive: the first key strictly after (moment, every id)
                start = bisect.bisect_right(self.keys, (moment.astimezone(UTC), "\U0010ffff"))
            cursor = query.get("cursor")
            if cursor:
                after = _decode_cursor(cursor)
                if after is None:
                    return 400, {"error": "cursor is not one of ours"}, {}
                start = max(start, bisect.bisect_right(self.keys, after))
            chosen = self.keys[start : start + limit]
            more = start + limit < len(self.keys)
            body = b"".join(
                (
                    b'{"items":[',
                    b",".join(self.encoded[k] for _, k in chosen),
                    b'],"next_cursor":',
                    orjson.dumps(_encode_cursor(chosen[-1]) if more and chosen else None),
                    b"}",
                )
            )
        return 200, body, {}

    def cancel(self, order_id: str, key: str | None, body: Any):
        if not key:
            return 400, {"error": "Idempotency-Key header is required"}, {}
        if len(key) > 128:
            return 400, {"error": "Idempotency-Key is longer than 128 characters"}, {}
        if not isinstance(body, dict) or body.get("reason") != "dunning_cancellation":
            return 400, {"error": "body must be {'reason': 'dunning_cancellation'}"}, {}
        with self.data_lock:
            self.cancel_calls.append((order_id, key))
            record = self.records.get(order_id)
            if record is None or not isinstance(record, dict):
                return 404, {"error": f"unknown order {order_id}"}, {}
            if order_id in self.cancelled:
                return (
                    200,
                    {
                        "order_id": order_id,
                        "status": "cancelled",
                        "repeat": True,
                        "idempotency_key": self.cancelled[order_id],
                    },
                    {},
                )
            if record.get("status") == "refunded":
                return 409, {"error": f"order {order_id} is refunded and cannot be cancelled"}, {}
            refusal = self.refuse_cancel(record)
            if refusal:
                return 422, {"error": refusal}, {}
            # Stamped after every other change (not the wall clock: tests and demos run
            # at chosen moments), so the next incremental read sees the cancellation.
            newest = self.keys[-1][0] if self.keys else EPOCH
            bumped = newest + timedelta(seconds=1)
            record = dict(record, status="cancelled", updated_at=bumped.isoformat())
            self._put(record, 0, sort=True)
            self.cancelled[order_id] = key
            return 200, {"order_id": order_id, "status": "cancelled", "repeat": False}, {}


def read_records(path: Path | str) -> list[Any]:
    """Records of a JSON Lines file (.gz too); lines that are not JSON are skipped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    out: list[Any] = []
    with opener(path, "rb") as f:  # type: ignore[operator]
        for line in f:
            if line.strip():
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
    return out


def start(
    records_or_path: Iterable[Any] | Path | str,
    token: str | None = None,
    faults: Faults | None = None,
    port: int = 0,
) -> OrdersApiServer:
    """Serve records (or a JSON Lines file) on 127.0.0.1 in a background thread."""
    if isinstance(records_or_path, str | Path):
        records: Iterable[Any] = read_records(records_or_path)
    else:
        records = records_or_path
    server = OrdersApiServer(records, port, token, faults or Faults())
    server.start()
    return server


def main(argv: list[str] | None = None) -> None:
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Serve a JSON Lines shop as the orders API.")
    parser.add_argument("--data", required=True, help="JSON Lines file (.jsonl or .jsonl.gz)")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--token", default=None, help="bearer token the clients must send")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of 503 answers")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="share of 429 answers")
    parser.add_argument("--slow", type=float, default=0.0, help="share of slow answers")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    faults = Faults(
        error_5xx=args.error_rate,
        rate_limit_429=args.rate_limit,
        slow=args.slow,
        slow_seconds=args.slow_seconds,
    )
    server = start(args.data, token=args.token, faults=faults, port=args.port)
    print(f"orders API on {server.url}/v1/orders ({len(server.records)} orders)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
