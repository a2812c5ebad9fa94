"""The local collection partner against version 2 of partner-api.openapi.yaml: a real server
on 127.0.0.1, spoken to over HTTP with httpx and with the client of dunning.tasks.partner.

The claim is the worked example of SPEC § 3a: 100.00 due 2025-01-10, 50.00 paid on
2025-06-10, interest broken down by period and rate (§ 13a RDG), 54.71 open.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dunning.servers.partner_api import PartnerServer, start
from dunning.tasks import partner as client_api
from dunning.tasks.http_client import make_client
from dunning.tasks.partner import DONE, FAILED
from tests.factories import debtor

TOKEN = "partner-v2-test-token"

CLAIM: dict[str, Any] = {
    "reference": "DUN-1",
    "order_id": "o-1001",
    "kind": "overdue",
    "escalation": "court",
    "creditor": {"merchant_id": "m1", "name": "Plattform GmbH", "address": "Hauptstr. 1, Köln"},
    "debtor": debtor(),
    "currency": "EUR",
    "contract_date": "2025-01-01",
    "default_date": "2025-01-11",
    "first_reminder_date": "2025-01-20",
    "subject": "Online-Kurs",
    "items": [
        {"type": "principal", "amount": "100.00", "due_date": "2025-01-10"},
        {
            "type": "interest",
            "amount": "3.01",
            "principal_base": "100.00",
            "from": "2025-01-11",
            "to": "2025-06-10",
            "rate_percent": "7.27",
        },
        {
            "type": "interest",
            "amount": "0.21",
            "principal_base": "53.01",
            "from": "2025-06-11",
            "to": "2025-06-30",
            "rate_percent": "7.27",
        },
        {
            "type": "interest",
            "amount": "1.49",
            "principal_base": "53.01",
            "from": "2025-07-01",
            "to": "2025-12-10",
            "rate_percent": "6.27",
        },
    ],
    "payments": [{"paid_at": "2025-06-10", "amount": "50.00"}],
}
INTEREST = CLAIM["items"][1]
FEE = {"type": "reminder_fee", "amount": "2.50", "date": "2026-01-05", "reason": "2. Mahnung"}
INSTALLMENT = {"type": "principal", "amount": "50.00", "due_date": "2026-01-15"}
DROP = object()  # in claim(): remove the field


def claim(reference: str = "DUN-1", /, **changes: Any) -> dict[str, Any]:
    """CLAIM with `changes` applied; a key is a dotted path (`debtor.type`, `items.1.to`),
    a value of DROP removes the field."""
    body = copy.deepcopy(CLAIM)
    body["reference"] = reference
    for path, value in changes.items():
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        elif value is DROP:
            del target[last]
        else:
            target[last] = value
    return body


@pytest.fixture
def server() -> Iterator[PartnerServer]:
    srv = start(token=TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def http(server: PartnerServer) -> Iterator[httpx.Client]:
    with make_client(server.url, TOKEN, timeout=5.0) as c:
        yield c


def post_claim(http: httpx.Client, body: dict[str, Any], key: str) -> httpx.Response:
    return http.post("/v1/claims", json=body, headers={"Idempotency-Key": key})


def handed_over(http: httpx.Client, reference: str = "DUN-1") -> str:
    response = post_claim(http, claim(reference), f"handover-{reference}")
    assert response.status_code == 201, response.text
    return response.json()["claim_id"]


# --- the claim -----------------------------------------------------------------------------


def test_valid_claim_is_created_once(server, http):
    first = client_api.hand_over(http, "case-1-handover", claim())
    assert first.status == DONE
    created = first.response
    assert (created["reference"], created["status"]) == ("DUN-1", "received")
    # The items as they arose, less the payment already applied to them.
    assert (created["open_amount"], created["paid_amount"]) == ("54.71", "0.00")

    same_key = post_claim(http, claim(), "case-1-handover")
    same_reference = post_claim(http, claim(), "another-key")
    assert (same_key.status_code, same_reference.status_code) == (200, 200)
    assert same_key.json()["claim_id"] == same_reference.json()["claim_id"] == created["claim_id"]
    assert server.claim_posts == {"DUN-1": 3}
    assert len(server.claims) == 1
    assert server.received("DUN-1") == claim()
    assert http.get(f"/v1/claims/{created['claim_id']}").json()["open_amount"] == "54.71"


def test_business_debtor_chargeback_with_fees(http):
    body = claim(
        "DUN-2",
        kind="chargeback",
        escalation="cancellation",
        payments=[],
        items=[
            {"type": "principal", "amount": "99.00", "due_date": "2026-01-10"},
            {"type": "chargeback_fee", "amount": "3.50", "date": "2026-01-12", "reason": "MD06"},
            {"type": "flat_fee_288_5", "amount": "40.00", "date": "2026-01-12"},
            {"type": "cancellation_costs", "amount": "30", "date": "2026-02-01"},
        ],
        **{"debtor.type": "business", "debtor.company_name": "Muster GmbH"},
    )
    response = post_claim(http, body, "k-2")
    assert response.status_code == 201, response.text
    assert response.json()["open_amount"] == "172.50"


REQUIRED = (
    "reference",
    "order_id",
    "kind",
    "creditor",
    "debtor",
    "currency",
    "items",
    "payments",
    "contract_date",
    "default_date",
    "escalation",
)
DEBTOR_REQUIRED = (
    "type",
    "first_name",
    "last_name",
    "street",
    "house_number",
    "zip_code",
    "city",
    "country_code",
)

INVALID = [
    *[pytest.param({name: DROP}, name, "required", id=f"no-{name}") for name in REQUIRED],
    *[
        pytest.param({f"debtor.{name}": DROP}, f"debtor.{name}", "required", id=f"no-debtor-{name}")
        for name in DEBTOR_REQUIRED
    ],
    pytest.param({"debtor.street": "  "}, "debtor.street", "required", id="blank-street"),
    pytest.param({"creditor.name": DROP}, "creditor.name", "required", id="no-creditor-name"),
    pytest.param(
        {"creditor.merchant_id": None}, "creditor.merchant_id", "required", id="null-merchant"
    ),
    pytest.param(
        {"debtor.type": "person"},
        "debtor.type",
        "must be one of consumer, business",
        id="debtor-type",
    ),
    pytest.param({"kind": "late"}, "kind", "must be one of overdue, chargeback", id="kind"),
    pytest.param(
        {"escalation": "letter"}, "escalation", "must be one of court, cancellation", id="escal"
    ),
    pytest.param({"debtor": "Erika"}, "debtor", "not an object", id="debtor-not-object"),
    pytest.param({"order_id": 1001}, "order_id", "not a string", id="order-id-number"),
    pytest.param(
        {"contract_date": "01.01.2025"}, "contract_date", "not a date (YYYY-MM-DD)", id="de-date"
    ),
    pytest.param(
        {"default_date": "2025-02-30"}, "default_date", "not a date (YYYY-MM-DD)", id="no-such-day"
    ),
    pytest.param(
        {"first_reminder_date": "2025-01-20T10:00:00Z"},
        "first_reminder_date",
        "not a date (YYYY-MM-DD)",
        id="reminder-date-time",
    ),
    pytest.param({"items": []}, "items", "not a list of at least one item", id="no-items"),
    pytest.param({"payments": {}}, "payments", "not a list", id="payments-not-list"),
    pytest.param({"items.0": "100.00"}, "items[0]", "not an object", id="item-not-object"),
    pytest.param({"items.0.type": DROP}, "items[0].type", "required", id="item-no-type"),
    pytest.param(
        {"items.0.type": "fee"},
        "items[0].type",
        "must be one of principal, reminder_fee, chargeback_fee, flat_fee_288_5, interest, "
        "cancellation_costs",
        id="item-type",
    ),
    pytest.param({"items.0.amount": DROP}, "items[0].amount", "required", id="item-no-amount"),
    *[
        pytest.param(
            {"items.0.amount": amount},
            "items[0].amount",
            "not a money amount",
            id=f"amount-{amount}",
        )
        for amount in ("100.001", "-100.00", "100,00", "1e2", 100.0)
    ],
    pytest.param(
        {"items.0.due_date": "15.01.2026"},
        "items[0].due_date",
        "not a date (YYYY-MM-DD)",
        id="item-due-date",
    ),
    pytest.param(
        {"payments.0.paid_at": DROP}, "payments[0].paid_at", "required", id="payment-no-paid-at"
    ),
    pytest.param(
        {"payments.0.paid_at": "2025-06-10T09:30:00+02:00"},
        "payments[0].paid_at",
        "not a date (YYYY-MM-DD)",
        id="payment-paid-at-date-time",
    ),
    pytest.param(
        {"payments.0.amount": "fifty"}, "payments[0].amount", "not a money amount", id="pay-amount"
    ),
    pytest.param({"payments.0": "50.00"}, "payments[0]", "not an object", id="pay-not-object"),
]


@pytest.mark.parametrize(("changes", "field", "message"), INVALID)
def test_invalid_claim_is_422_naming_the_field(server, http, changes, field, message):
    response = post_claim(http, claim("DUN-9", **changes), "k-9")
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "invalid claim", "fields": {field: message}}
    assert server.claims == {}


def test_every_broken_field_is_named_at_once(http):
    body = claim(**{"debtor.type": DROP, "items.2.rate_percent": DROP, "payments.0.paid_at": "x"})
    del body["order_id"]
    response = post_claim(http, body, "k-1")
    assert response.status_code == 422
    assert response.json()["fields"] == {
        "order_id": "required",
        "debtor.type": "required",
        "items[2].rate_percent": "required for interest",
        "payments[0].paid_at": "not a date (YYYY-MM-DD)",
    }


def test_client_reports_the_partners_field_messages(http):
    outcome = client_api.hand_over(http, "k-1", claim(**{"debtor.zip_code": ""}))
    assert outcome.status == FAILED
    assert outcome.error == "HTTP 422: invalid claim (debtor.zip_code: required)"


def test_reject_on_demand_still_answers_422(server, http):
    server.reject("DUN-1", "debtor unknown at this address")
    response = post_claim(http, claim(), "k-1")
    assert response.status_code == 422
    assert response.json()["fields"] == {"debtor": "debtor unknown at this address"}


# --- interest: § 13a RDG wants the calculation ------------------------------------------------


@pytest.mark.parametrize("name", ["principal_base", "from", "to", "rate_percent"])
@pytest.mark.parametrize("missing", [DROP, None, ""], ids=["absent", "null", "blank"])
def test_interest_without_its_breakdown_is_422(http, name, missing):
    response = post_claim(http, claim(**{f"items.1.{name}": missing}), "k-1")
    assert response.status_code == 422
    assert response.json()["fields"] == {f"items[1].{name}": "required for interest"}


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("principal_base", "100", None),
        ("principal_base", "100.005", "not a money amount"),
        ("rate_percent", "7.265", None),
        ("rate_percent", "7,27 %", "not a rate in percent"),
        ("from", "2025-13-01", "not a date (YYYY-MM-DD)"),
        ("to", "2025-01-10", "before from"),
    ],
)
def test_interest_breakdown_formats(http, name, value, message):
    response = post_claim(http, claim(**{f"items.1.{name}": value}), "k-1")
    if message is None:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422
        assert response.json()["fields"] == {f"items[1].{name}": message}


def test_bare_interest_item_names_all_four_fields(http):
    response = post_claim(http, claim(**{"items.1": {"type": "interest", "amount": "3.01"}}), "k")
    assert response.status_code == 422
    assert response.json()["fields"] == {
        f"items[1].{name}": "required for interest"
        for name in ("principal_base", "from", "to", "rate_percent")
    }


# --- items added after handover ----------------------------------------------------------------


def test_added_items_raise_the_claim_once_per_key(server, http):
    claim_id = handed_over(http)
    interest = dict(INTEREST, amount="0.35", **{"from": "2025-12-11", "to": "2026-01-15"})

    first = client_api.add_items(http, "case-1-items-1", claim_id, [INSTALLMENT, FEE])
    assert first.status == DONE
    assert first.response["open_amount"] == "107.21"  # 54.71 + 50.00 + 2.50
    again = client_api.add_items(http, "case-1-items-1", claim_id, [INSTALLMENT, FEE])
    assert again.status == DONE and again.response["open_amount"] == "107.21"
    second = client_api.add_items(http, "case-1-items-2", claim_id, [interest])
    assert second.status == DONE and second.response["open_amount"] == "107.56"

    assert server.added_items(claim_id) == [
        dict(INSTALLMENT, idempotency_key="case-1-items-1"),
        dict(FEE, idempotency_key="case-1-items-1"),
        dict(interest, idempotency_key="case-1-items-2"),
    ]
    assert server.item_posts == {"DUN-1": 3}
    assert http.get(f"/v1/claims/{claim_id}").json()["open_amount"] == "107.56"
    # The claim as handed over is unchanged by the additions.
    assert server.received("DUN-1") == claim()


def test_added_items_count_when_the_partner_reports_paid(server, http):
    claim_id = handed_over(http)
    assert client_api.add_items(http, "k-items", claim_id, [FEE]).status == DONE
    server.set_status("DUN-1", "paid")
    assert http.get(f"/v1/claims/{claim_id}").json()["paid_amount"] == "57.21"


@pytest.mark.parametrize(
    ("items", "fields"),
    [
        ([], {"items": "not a list of at least one item"}),
        (None, {"items": "required"}),
        (
            [FEE, dict(INTEREST, rate_percent=None)],
            {"items[1].rate_percent": "required for interest"},
        ),
        ([dict(FEE, amount="2.5.0"), {"type": "costs"}], None),
    ],
    ids=["empty", "absent", "interest-without-rate", "several"],
)
def test_invalid_added_items_are_422_and_add_nothing(server, http, items, fields):
    claim_id = handed_over(http)
    response = http.post(
        f"/v1/claims/{claim_id}/items",
        json={} if items is None else {"items": items},
        headers={"Idempotency-Key": "k-items"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid items"
    if fields is None:
        assert set(body["fields"]) == {"items[0].amount", "items[1].type", "items[1].amount"}
    else:
        assert body["fields"] == fields
    assert server.added_items(claim_id) == []
    assert server.claim("DUN-1")["open_amount"] == "54.71"
    # The refused key is not spent: the corrected items go through with it.
    assert client_api.add_items(http, "k-items", claim_id, [FEE]).response["open_amount"] == "57.21"


@pytest.mark.parametrize("status", ["recalled", "closed", "paid"])
def test_items_to_a_claim_no_longer_held_are_409(server, http, status):
    claim_id = handed_over(http)
    if status == "recalled":
        assert client_api.recall(http, "k-recall", claim_id, "cancelled_by_creditor").status == DONE
    else:
        server.set_status("DUN-1", status)
    outcome = client_api.add_items(http, "k-items", claim_id, [INSTALLMENT])
    assert outcome.status == FAILED
    assert outcome.error is not None and outcome.error.startswith("HTTP 409")
    assert f"no items can be added in status {status}" in outcome.error
    assert server.added_items(claim_id) == []


def test_items_to_an_unknown_claim_fail(http):
    outcome = client_api.add_items(http, "k-items", "CL-999999", [INSTALLMENT])
    assert outcome.status == FAILED and outcome.error is not None
    assert outcome.error.startswith("HTTP 404")


def test_items_without_idempotency_key_are_400(http):
    claim_id = handed_over(http)
    response = http.post(f"/v1/claims/{claim_id}/items", json={"items": [FEE]})
    assert response.status_code == 400


# --- payments reported after handover ------------------------------------------------------------


def test_payments_keep_their_paid_at_and_count_once_per_key(server, http):
    claim_id = handed_over(http)
    arrived = "2026-01-20T09:30:00+01:00"
    first = client_api.report_payment(http, "case-1-payment-20.00", claim_id, "20.00", arrived)
    assert first.status == DONE and first.response["open_amount"] == "34.71"
    again = client_api.report_payment(http, "case-1-payment-20.00", claim_id, "20.00", arrived)
    assert again.status == DONE and again.response["open_amount"] == "34.71"
    later = client_api.report_payment(http, "case-1-payment-30.00", claim_id, "10", "2026-01-31")
    assert later.status == DONE and later.response["open_amount"] == "24.71"

    assert server.payments_of(claim_id) == [
        {"amount": "20.00", "paid_at": arrived},
        {"amount": "10", "paid_at": "2026-01-31"},
    ]
    assert server.payments == {"DUN-1": server.payments_of(claim_id)}
    assert server.payment_posts == {"DUN-1": 3}


@pytest.mark.parametrize(
    "paid_at",
    ["2026-01-20", "2026-01-20T09:30:00", "2026-01-20T08:30:00Z", "2026-01-20T09:30:00.5+01:00"],
)
def test_paid_at_may_be_a_date_or_a_date_time(server, http, paid_at):
    claim_id = handed_over(http)
    outcome = client_api.report_payment(http, "k-pay", claim_id, "5.00", paid_at)
    assert outcome.status == DONE
    assert server.payments_of(claim_id) == [{"amount": "5.00", "paid_at": paid_at}]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"amount": "5.00"}, {"paid_at": "required"}),
        ({"paid_at": "2026-01-20"}, {"amount": "required"}),
        ({"amount": "5.00", "paid_at": "20.01.2026"}, {"paid_at": "not a date-time or date"}),
        ({"amount": "5.00", "paid_at": "2026-01-20Tnoon"}, {"paid_at": "not a date-time or date"}),
        ({"amount": "5,00", "paid_at": "2026-01-20"}, {"amount": "not a money amount"}),
    ],
    ids=["no-paid-at", "no-amount", "german-date", "bad-time", "comma-amount"],
)
def test_invalid_payment_is_422_and_not_recorded(server, http, body, fields):
    claim_id = handed_over(http)
    response = http.post(
        f"/v1/claims/{claim_id}/payments", json=body, headers={"Idempotency-Key": "k-pay"}
    )
    assert response.status_code == 422
    assert response.json() == {"error": "invalid payment", "fields": fields}
    assert server.payments_of(claim_id) == []
    assert server.claim("DUN-1")["open_amount"] == "54.71"


def test_a_request_cut_off_before_its_body_is_not_acted_on(server, http):
    """A run killed between the headers and the body of its POST: the partner sees a short
    body and must not count it as a claim (with no reference, two such calls once looked
    like one claim sent under two keys)."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server.url)
    head = (
        "POST /v1/claims HTTP/1.1\r\n"
        f"Host: {url.hostname}\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Idempotency-Key: case-1-handover\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 512\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head.encode())
    handed_over(http)
    assert server.claim_posts == {"DUN-1": 1}
