"""A local collection partner implementing partner-api.openapi.yaml (version 2), for demos
and tests.

Claims are deduplicated by `reference` and by Idempotency-Key; every POST is counted per
reference (`claim_posts`), so a test can prove a handover landed once. A claim, the items
added after handover and the payments reported are validated as the contract says: a 422
names each field that is missing or malformed by its path (`debtor.type`,
`items[2].rate_percent`, `payments[0].paid_at`). Control from a test:
`set_status(reference, status)`, `reject(reference, message)` (422 on demand),
`outage = True` (every request 500), and `rule` (a function applied to each claim on
GET, returning a new status or None). What the partner received: `received(reference)`,
`added_items(claim_id)`, `payments_of(claim_id)`.
`python -m dunning.servers.partner_api --port N`.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import re
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from dunning.models.address import REQUIRED_FIELDS
from dunning.servers.http import Faults, JsonHandler, LoopbackServer

PAGE = 200
CLOSED = ("recalled", "closed", "paid")  # no items are added to these
INTEREST_FIELDS = ("principal_base", "from", "to", "rate_percent")  # § 13a RDG

ITEM_TYPES = "principal reminder_fee chargeback_fee flat_fee_288_5 interest cancellation_costs"
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# A field's test and the message naming what is wrong when a present value fails it.
Test = tuple[Callable[[Any], bool], str]


def _is_date(value: Any, time_too: bool = False) -> bool:
    """YYYY-MM-DD, a real day; with `time_too` also an ISO date-time ("Z", offset or none)."""
    if not isinstance(value, str) or not DAY.match(value) or (len(value) > 10 and not time_too):
        return False
    try:
        (datetime if time_too else date).fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _matches(regex: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and re.fullmatch(regex, v) is not None


def one_of(options: str) -> Test:
    return (lambda v: v in options.split()), "must be one of " + ", ".join(options.split())


TEXT: Test = (lambda v: isinstance(v, str)), "not a string"
OBJECT: Test = (lambda v: isinstance(v, dict)), "not an object"
LIST: Test = (lambda v: isinstance(v, list)), "not a list"
ITEMS: Test = (lambda v: isinstance(v, list) and len(v) > 0), "not a list of at least one item"
MONEY: Test = _matches(r"[0-9]+(\.[0-9]{1,2})?"), "not a money amount"
RATE: Test = _matches(r"[0-9]+(\.[0-9]+)?"), "not a rate in percent"
DATE: Test = _is_date, "not a date (YYYY-MM-DD)"
INSTANT: Test = (lambda v: _is_date(v, time_too=True)), "not a date-time or date"


def rules(required: str, **tests: Test) -> dict[str, tuple[bool, Callable[[Any], bool], str]]:
    """Each field's (required, test, message); `required` names fields separated by spaces."""
    return {name: (name in required.split(), *test) for name, test in tests.items()}


CLAIM_RULES = rules(
    "reference order_id kind escalation creditor debtor currency contract_date default_date "
    "items payments",
    reference=TEXT,
    order_id=TEXT,
    kind=one_of("overdue chargeback"),
    escalation=one_of("court cancellation"),
    creditor=OBJECT,
    debtor=OBJECT,
    currency=TEXT,
    contract_date=DATE,
    default_date=DATE,
    first_reminder_date=DATE,
    items=ITEMS,
    payments=LIST,
)
CREDITOR_RULES = rules("merchant_id name", merchant_id=TEXT, name=TEXT)
DEBTOR_RULES = rules(
    " ".join(("type", *REQUIRED_FIELDS)),
    type=one_of("consumer business"),
    **dict.fromkeys(REQUIRED_FIELDS, TEXT),
)
ITEM_RULES = rules(
    "type amount",
    type=one_of(ITEM_TYPES),
    amount=MONEY,
    due_date=DATE,
    date=DATE,
    principal_base=MONEY,
    rate_percent=RATE,
    **{"from": DATE, "to": DATE},
)
PAID_RULES = rules("paid_at amount", paid_at=DATE, amount=MONEY)  # listed in a NewClaim
PAYMENT_RULES = rules("amount paid_at", amount=MONEY, paid_at=INSTANT)  # reported later
ADDITION_RULES = rules("items", items=ITEMS)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def check(obj: Any, field_rules: dict[str, Any], at: str = "") -> dict[str, str]:
    """Field path -> message for each field of `obj` that breaks its rule. Missing is
    absent, null or blank: "required" if the rule says so."""
    if not isinstance(obj, dict):
        return {at or "body": "not an object"}
    errors: dict[str, str] = {}
    for name, (required, test, message) in field_rules.items():
        value = obj.get(name)
        if _missing(value) and required:
            errors[f"{at}.{name}" if at else name] = "required"
        elif not _missing(value) and not test(value):
            errors[f"{at}.{name}" if at else name] = message
    return errors


def check_items(items: Any, at: str = "items") -> dict[str, str]:
    """The items of a claim or of an addition; interest carries its calculation."""
    errors: dict[str, str] = {}
    for i, item in enumerate(items if isinstance(items, list) else []):
        path = f"{at}[{i}]"
        errors |= check(item, ITEM_RULES, path)
        if not isinstance(item, dict) or item.get("type") != "interest":
            continue
        for name in INTEREST_FIELDS:
            if _missing(item.get(name)):
                errors[f"{path}.{name}"] = "required for interest"
        period_ok = not {f"{path}.from", f"{path}.to"} & errors.keys()
        if period_ok and item["to"] < item["from"]:
            errors[f"{path}.to"] = "before from"
    return errors


def check_claim(body: Any) -> dict[str, str]:
    errors = check(body, CLAIM_RULES)
    if errors.get("body"):
        return errors
    if "creditor" not in errors:
        errors |= check(body.get("creditor"), CREDITOR_RULES, "creditor")
    if "debtor" not in errors:
        errors |= check(body.get("debtor"), DEBTOR_RULES, "debtor")
    errors |= check_items(body.get("items"))
    payments = body.get("payments")
    for i, paid in enumerate(payments if isinstance(payments, list) else []):
        errors |= check(paid, PAID_RULES, f"payments[{i}]")
    return errors


def _sum(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(r["amount"]) for r in rows), Decimal(0))


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
        self.item_posts: Counter[str] = Counter()
        self.payments: dict[str, list[dict[str, Any]]] = {}  # reference -> as received
        self.added: dict[str, list[dict[str, Any]]] = {}  # claim_id -> items with their key
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

    def received(self, reference: str) -> dict[str, Any]:
        """The NewClaim body the claim was created from."""
        with self.state_lock:
            return copy.deepcopy(self.claim(reference)["request"])

    def added_items(self, claim_id: str) -> list[dict[str, Any]]:
        """Items added after handover, in order, each with its `idempotency_key`."""
        with self.state_lock:
            return copy.deepcopy(self.added.get(claim_id, []))

    def payments_of(self, claim_id: str) -> list[dict[str, Any]]:
        """Payments reported for a claim, in order: `amount` and `paid_at` as received."""
        with self.state_lock:
            return copy.deepcopy(self.payments.get(self.claims[claim_id]["reference"], []))

    # --- the API ---------------------------------------------------------------------

    def _touch(self, claim: dict[str, Any]) -> None:
        now = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        self._last = now
        claim["updated_at"] = now.isoformat()

    def public(self, claim: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in claim.items() if not k.startswith("_") and k != "request"}

    def post_claim(self, body: Any, key: str | None):
        reference = str(body.get("reference") or "") if isinstance(body, dict) else ""
        self.claim_posts[reference] += 1
        if not key:
            return 400, {"error": "Idempotency-Key header is required"}, {}
        existing = self.by_key.get(key) or self.by_reference.get(reference)
        if existing:
            return 200, self.public(self.claims[existing]), {}
        errors = check_claim(body)
        if reference in self.rejected:
            errors["debtor"] = self.rejected[reference]
        if errors:
            return 422, {"error": "invalid claim", "fields": errors}, {}
        # The items are what arose; the payments listed were already applied to them.
        total = max(_sum(body["items"]) - _sum(body["payments"]), Decimal(0))
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
                errors = check(body, PAYMENT_RULES)
                if errors:
                    return 422, {"error": "invalid payment", "fields": errors}, {}
                paid = {"amount": body["amount"], "paid_at": body["paid_at"]}
                self.payments.setdefault(ref, []).append(paid)
                open_ = max(Decimal(claim["open_amount"]) - Decimal(paid["amount"]), Decimal(0))
                claim["open_amount"] = f"{open_:.2f}"
                self._touch(claim)
                self.seen_keys[key] = self.public(claim)
            return 200, self.seen_keys[key], {}
        if what == "items":
            self.item_posts[ref] += 1
            if seen is not None:  # the same key again: nothing more is added
                return 200, self.public(claim), {}
            if claim["status"] in CLOSED:
                return 409, {"error": f"no items can be added in status {claim['status']}"}, {}
            items = body.get("items") if isinstance(body, dict) else None
            errors = check(body, ADDITION_RULES) | check_items(items)
            if errors:
                return 422, {"error": "invalid items", "fields": errors}, {}
            added = _sum(items)
            claim["_total"] += added
            claim["open_amount"] = f"{Decimal(claim['open_amount']) + added:.2f}"
            self.added.setdefault(claim["claim_id"], []).extend(
                dict(item, idempotency_key=key) for item in items
            )
            self._touch(claim)
            self.seen_keys[key] = claim["claim_id"]
            return 200, self.public(claim), {}
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
