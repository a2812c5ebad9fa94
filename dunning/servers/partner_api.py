"""A local collection partner implementing partner-api.openapi.yaml, for demos and tests.

Claims are deduplicated by `reference` and by Idempotency-Key; every POST is counted per
reference (`claim_posts`), so a test can prove a handover landed once. Control from a
test: `set_status(reference, status)`, `reject(reference, message)` (422 on demand),
`outage = True` (every request 500), and `rule` (a function applied to each claim on
GET, returning a new status or None). `python -m dunning.servers.partner_api --port N`.
"""

from __future__ import annotations

import argparse
import itertools
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from dunning.servers.http import Faults, JsonHandler, LoopbackServer

DEBTOR_FIELDS = (
    "first_name",
    "last_name",
    "street",
    "house_number",
    "zip_code",
    "city",
    "country_code",
)
PAGE = 200


class PartnerHandler(JsonHandler):
    server: PartnerServer
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle + delayed ACK
    # stall every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True

    def route(self, method: str, path: str, query: dict[str, str], body: Any):
        srv = self.server
        if srv.outage:
            return 500, {"error": "partner outage (simulated)"}, {}
        parts = [p for p in path.split("/") if p]
        key = self.headers.get("Idempotency-Key")
        with srv.state_lock:
            if parts[:2] != ["v1", "claims"]:
                return 404, {"error": "not found"}, {}
            if len(parts) == 2 and method == "POST":
                return srv.post_claim(body or {}, key)
            if len(parts) == 2 and method == "GET":
                return srv.list_claims(query)
            claim = srv.claims.get(parts[2]) if len(parts) >= 3 else None
            if claim is None:
                return 404, {"error": "unknown claim"}, {}
            if len(parts) == 3 and method == "GET":
                return 200, srv.public(claim), {}
            if len(parts) == 4 and method == "POST":
                if not key:
                    return 400, {"error": "Idempotency-Key header is required"}, {}
                return srv.post_sub(claim, parts[3], body or {}, key)
        return 405, {"error": "method not allowed"}, {}


class PartnerServer(LoopbackServer):
    def __init__(self, port: int = 0, token: str | None = None, faults: Faults | None = None):
        super().__init__(PartnerHandler, port, token, faults or Faults())
        self.state_lock = threading.RLock()
        self.outage = False
        self.claims: dict[str, dict[str, Any]] = {}
        self.by_reference: dict[str, str] = {}
        self.by_key: dict[str, str] = {}
        self.claim_posts: Counter[str] = Counter()
        self.court_posts: Counter[str] = Counter()
        self.payment_posts: Counter[str] = Counter()
        self.recall_posts: Counter[str] = Counter()
        self.rejected: dict[str, str] = {}
        self.payments: dict[str, list[dict[str, Any]]] = {}
        self.seen_keys: dict[str, Any] = {}
        self.rule: Callable[[dict[str, Any]], str | None] | None = None
        self._ids = itertools.count(1)
        self._last = datetime(2000, 1, 1, tzinfo=UTC)

    # --- control from tests and demos ------------------------------------------------

    def reject(self, reference: str, message: str = "debtor address incomplete") -> None:
        with self.state_lock:
            self.rejected[reference] = message

    def set_status(self, reference: str, status: str, paid_amount: str | None = None) -> None:
        with self.state_lock:
            claim = self.claims[self.by_reference[reference]]
            claim["status"] = status
            if paid_amount is not None:
                paid = Decimal(paid_amount)
                claim["paid_amount"] = f"{paid:.2f}"
                claim["open_amount"] = f"{max(claim['_total'] - paid, Decimal(0)):.2f}"
            elif status == "paid":
                claim["paid_amount"] = f"{claim['_total']:.2f}"
                claim["open_amount"] = "0.00"
            self._touch(claim)

    def claim(self, reference: str) -> dict[str, Any]:
        with self.state_lock:
            return self.claims[self.by_reference[reference]]

    # --- the API ---------------------------------------------------------------------

    def _touch(self, claim: dict[str, Any]) -> None:
        now = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        self._last = now
        claim["updated_at"] = now.isoformat()

    def public(self, claim: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in claim.items() if not k.startswith("_") and k != "request"}

    def post_claim(self, body: dict[str, Any], key: str | None):
        reference = str(body.get("reference") or "")
        self.claim_posts[reference] += 1
        if not key:
            return 400, {"error": "Idempotency-Key header is required"}, {}
        existing = self.by_key.get(key) or self.by_reference.get(reference)
        if existing:
            return 200, self.public(self.claims[existing]), {}
        errors: dict[str, str] = {}
        for name in ("reference", "creditor", "debtor", "currency", "items", "contract_date"):
            if not body.get(name):
                errors[name] = "required"
        debtor = body.get("debtor") or {}
        for name in DEBTOR_FIELDS:
            if not str(debtor.get(name) or "").strip():
                errors[f"debtor.{name}"] = "required"
        if reference in self.rejected:
            errors["debtor"] = self.rejected[reference]
        total = Decimal(0)
        for i, item in enumerate(body.get("items") or []):
            try:
                total += Decimal(str(item["amount"]))
            except Exception:
                errors[f"items[{i}].amount"] = "not a money amount"
        if errors:
            return 422, {"error": "invalid claim", "fields": errors}, {}
        claim_id = f"CL-{next(self._ids):06d}"
        claim = {
            "claim_id": claim_id,
            "reference": reference,
            "status": "received",
            "open_amount": f"{total:.2f}",
            "paid_amount": "0.00",
            "status_reason": None,
            "_total": total,
            "request": body,
        }
        self._touch(claim)
        self.claims[claim_id] = claim
        self.by_reference[reference] = claim_id
        self.by_key[key] = claim_id
        return 201, self.public(claim), {}

    def list_claims(self, query: dict[str, str]):
        if self.rule is not None:
            for claim in self.claims.values():
                new = self.rule(claim)
                if new and new != claim["status"]:
                    claim["status"] = new
                    if new == "paid":
                        claim["paid_amount"] = f"{claim['_total']:.2f}"
                        claim["open_amount"] = "0.00"
                    self._touch(claim)
        since = query.get("updated_since")
        rows = sorted(self.claims.values(), key=lambda c: c["updated_at"])
        if since:
            bound = datetime.fromisoformat(since.replace("Z", "+00:00"))
            rows = [c for c in rows if datetime.fromisoformat(c["updated_at"]) > bound]
        start = int(query.get("cursor") or 0)
        page = rows[start : start + PAGE]
        more = start + PAGE < len(rows)
        return (
            200,
            {
                "items": [self.public(c) for c in page],
                "next_cursor": str(start + PAGE) if more else None,
            },
            {},
        )

    def post_sub(self, claim: dict[str, Any], what: str, body: dict[str, Any], key: str):
        ref = claim["reference"]
        seen = self.seen_keys.get(key)
        if what == "court-proceedings":
            self.court_posts[ref] += 1
            if seen is not None:
                return 202, seen, {}
            if claim["status"] not in ("unsuccessful", "court_requested"):
                return (
                    409,
                    {"error": f"court proceedings not possible in status {claim['status']}"},
                    {},
                )
            claim["status"] = "court_requested"
            self._touch(claim)
            result = self.public(claim)
            self.seen_keys[key] = result
            return 202, result, {}
        if what == "payments":
            self.payment_posts[ref] += 1
            if seen is None:
                amount = Decimal(str(body.get("amount", "0")))
                self.payments.setdefault(ref, []).append(body)
                claim["open_amount"] = (
                    f"{max(Decimal(claim['open_amount']) - amount, Decimal(0)):.2f}"
                )
                self._touch(claim)
                self.seen_keys[key] = self.public(claim)
            return 200, self.seen_keys[key], {}
        if what == "recall":
            self.recall_posts[ref] += 1
            if claim["status"] != "recalled":
                claim["status"] = "recalled"
                claim["status_reason"] = body.get("reason")
                self._touch(claim)
            return 200, self.public(claim), {}
        return 404, {"error": "not found"}, {}


def start(token: str | None = None, faults: Faults | None = None, port: int = 0) -> PartnerServer:
    """Start the local partner in a background thread; `.url`, `.stop()`."""
    return PartnerServer(port, token, faults).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local collection partner (claims API).")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=None)
    args = parser.parse_args(argv)
    server = PartnerServer(args.port, args.token, Faults())
    print(f"partner API on {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
