"""A small, hand-computed case board: orders via load_orders, cases inserted directly.

AS_OF is 2026-02-01 06:00 UTC = 07:00 in Berlin, so the run's local date is 2026-02-01.
EXPECTED holds every case_report column of every case, computed by hand (see comments).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

from tests.factories import address, load_orders, order_record, schedule

AS_OF = datetime(2026, 2, 1, 6, 0, tzinfo=UTC)
HYPERLINK = '=HYPERLINK("http://x")'


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


ORDERS = [
    order_record("o1", "m1", buyer=address()),
    order_record(
        "o2",
        "m1",
        total_amount="300.00",
        payment_plan="breakdown_payment",
        payment_method="sepa",
        installments=schedule(3, date(2026, 1, 5), "100.00"),
        buyer=address(first_name="Jürgen", last_name="Müller", email="jm@example.org"),
    ),
    order_record(
        "o3",
        "m2",
        total_amount="49.90",
        payment_method="credit_card",
        buyer=address(first_name=HYPERLINK, last_name="Smith", email="evil@example.org"),
    ),
    order_record(
        "o4",
        "m2",
        total_amount="20.00",
        buyer=address(first_name="Anna", last_name="O'Brien", street=None, zip_code=None),
    ),
    order_record(
        "x%_5",
        "m1",
        total_amount="10.00",
        payment_plan="abonnement",
        payment_method="paypal",
        buyer=address(first_name="Zoë", last_name="Straßer;--", email="zoe@example.org"),
    ),
    order_record(
        "o6",
        "m3",
        currency="CHF",
        total_amount="80.00",
        buyer=address(first_name="Hans", last_name="MÜLLER", email="hans@example.ch"),
    ),
]

_ZERO = D("0.00")


def _case(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "kind": "overdue",
        "held_from_state": None,
        "dunning_option": "court",
        "currency": "EUR",
        "principal_amount": _ZERO,
        "fees_amount": _ZERO,
        "interest_amount": _ZERO,
        "cancellation_costs": _ZERO,
        "paid_amount": _ZERO,
        "partner_paid_amount": _ZERO,
        "outstanding_amount": _ZERO,
        "blocked_reason": None,
        "started_at": None,
        "reminder_1_at": None,
        "reminder_2_at": None,
        "handed_over_at": None,
        "last_step_at": None,
        "next_step_at": None,
        "partner_claim_id": None,
        "partner_reference": None,
        "partner_status": None,
        "partner_error": None,
        "closed_at": None,
        "close_reason": None,
        "updated_at": AS_OF,
    }
    row.update(kw)
    return row


CASES = [
    _case(
        case_id=1,
        order_id="o1",
        merchant_id="m1",
        state="reminder_1",
        opened_at=_t("2026-01-16 05:00"),
        default_date=date(2026, 1, 15),
        principal_amount=D("99.00"),
        fees_amount=D("2.50"),
        outstanding_amount=D("101.50"),
        last_step_at=_t("2026-01-25 06:00"),
        next_step_at=_t("2026-02-04 06:00"),
    ),
    _case(
        case_id=2,
        order_id="o2",
        merchant_id="m1",
        state="with_partner",
        opened_at=_t("2026-01-06 05:00"),
        default_date=date(2026, 1, 5),
        principal_amount=D("100.00"),
        fees_amount=D("5.00"),
        interest_amount=D("0.35"),
        paid_amount=D("30.10"),
        partner_paid_amount=D("20.20"),
        outstanding_amount=D("55.05"),
        partner_reference="P-77",
        last_step_at=_t("2026-01-26 06:00"),
        partner_error="422: zip invalid for jm@example.org",
    ),
    _case(
        case_id=3,
        order_id="o3",
        merchant_id="m2",
        kind="chargeback",
        state="paid",
        dunning_option="cancellation",
        opened_at=_t("2026-01-11 05:00"),
        default_date=date(2026, 1, 10),
        principal_amount=D("49.90"),
        fees_amount=D("15.00"),
        cancellation_costs=D("1.10"),
        paid_amount=D("66.00"),
        closed_at=_t("2026-01-20 23:30"),
    ),
    _case(
        case_id=4,
        order_id="o4",
        merchant_id="m2",
        state="blocked",
        opened_at=_t("2026-01-31 22:59"),
        default_date=date(2026, 1, 31),
        principal_amount=D("20.00"),
        outstanding_amount=D("20.00"),
        blocked_reason="missing address fields: street, zip_code",
    ),
    _case(
        case_id=5,
        order_id="x%_5",
        merchant_id="m1",
        state="awaiting_approval",
        opened_at=_t("2026-01-30 10:00"),
        default_date=date(2026, 2, 3),
        principal_amount=D("10.00"),
        outstanding_amount=D("10.00"),
    ),
    _case(
        case_id=6,
        order_id="o6",
        merchant_id="m3",
        state="scheduled",
        currency="CHF",
        opened_at=_t("2026-01-20 12:00"),
        default_date=date(2026, 1, 19),
        principal_amount=D("80.00"),
        outstanding_amount=D("80.00"),
        next_step_at=_t("2026-01-29 12:00"),
    ),
]


def _expected(case_id: int, **kw: Any) -> dict[str, Any]:
    return {"case_id": case_id, "refreshed_at": AS_OF, **kw}


# Hand-computed. overdue_days: open cases 2026-02-01 - default_date; case 3 is paid and
# freezes at its closing: 2026-01-20 23:30 UTC is 2026-01-21 00:30 in Berlin -> 21 - 10 = 11
# (a UTC calendar would say 10). Case 5 defaults in the future -> 0, never negative.
# paid_amount = paid at the source + paid to the partner: case 2: 30.10 + 20.20 = 50.30.
EXPECTED: dict[int, dict[str, Any]] = {
    1: _expected(
        1,
        merchant_id="m1",
        order_id="o1",
        first_name="Erika",
        last_name="Mustermann",
        payment_plan="one_time_payment",
        payment_method="sepa",
        kind="overdue",
        state="reminder_1",
        state_label="1. Mahnung",
        overdue_days=17,
        outstanding_amount=D("101.50"),
        order_amount=D("99.00"),
        paid_amount=D("0.00"),
        cancellation_costs=D("0.00"),
        fees_amount=D("2.50"),
        interest_amount=D("0.00"),
        dunning_option="court",
        currency="EUR",
        opened_at=_t("2026-01-16 05:00"),
        last_step_at=_t("2026-01-25 06:00"),
        next_step_at=_t("2026-02-04 06:00"),
        partner_reference=None,
        blocked_reason=None,
    ),
    2: _expected(
        2,
        merchant_id="m1",
        order_id="o2",
        first_name="Jürgen",
        last_name="Müller",
        payment_plan="breakdown_payment",
        payment_method="sepa",
        kind="overdue",
        state="with_partner",
        state_label="Beim Inkassopartner",
        overdue_days=27,
        outstanding_amount=D("55.05"),
        order_amount=D("300.00"),
        paid_amount=D("50.30"),
        cancellation_costs=D("0.00"),
        fees_amount=D("5.00"),
        interest_amount=D("0.35"),
        dunning_option="court",
        currency="EUR",
        opened_at=_t("2026-01-06 05:00"),
        last_step_at=_t("2026-01-26 06:00"),
        next_step_at=None,
        partner_reference="P-77",
        blocked_reason=None,
    ),
    3: _expected(
        3,
        merchant_id="m2",
        order_id="o3",
        first_name=HYPERLINK,
        last_name="Smith",
        payment_plan="one_time_payment",
        payment_method="credit_card",
        kind="chargeback",
        state="paid",
        state_label="Bezahlt",
        overdue_days=11,
        outstanding_amount=D("0.00"),
        order_amount=D("49.90"),
        paid_amount=D("66.00"),
        cancellation_costs=D("1.10"),
        fees_amount=D("15.00"),
        interest_amount=D("0.00"),
        dunning_option="cancellation",
        currency="EUR",
        opened_at=_t("2026-01-11 05:00"),
        last_step_at=None,
        next_step_at=None,
        partner_reference=None,
        blocked_reason=None,
    ),
    4: _expected(
        4,
        merchant_id="m2",
        order_id="o4",
        first_name="Anna",
        last_name="O'Brien",
        payment_plan="one_time_payment",
        payment_method="sepa",
        kind="overdue",
        state="blocked",
        state_label="Geblockt",
        overdue_days=1,
        outstanding_amount=D("20.00"),
        order_amount=D("20.00"),
        paid_amount=D("0.00"),
        cancellation_costs=D("0.00"),
        fees_amount=D("0.00"),
        interest_amount=D("0.00"),
        dunning_option="court",
        currency="EUR",
        opened_at=_t("2026-01-31 22:59"),
        last_step_at=None,
        next_step_at=None,
        partner_reference=None,
        blocked_reason="missing address fields: street, zip_code",
    ),
    5: _expected(
        5,
        merchant_id="m1",
        order_id="x%_5",
        first_name="Zoë",
        last_name="Straßer;--",
        payment_plan="abonnement",
        payment_method="paypal",
        kind="overdue",
        state="awaiting_approval",
        state_label="Warten auf Freigabe",
        overdue_days=0,
        outstanding_amount=D("10.00"),
        order_amount=D("10.00"),
        paid_amount=D("0.00"),
        cancellation_costs=D("0.00"),
        fees_amount=D("0.00"),
        interest_amount=D("0.00"),
        dunning_option="court",
        currency="EUR",
        opened_at=_t("2026-01-30 10:00"),
        last_step_at=None,
        next_step_at=None,
        partner_reference=None,
        blocked_reason=None,
    ),
    6: _expected(
        6,
        merchant_id="m3",
        order_id="o6",
        first_name="Hans",
        last_name="MÜLLER",
        payment_plan="one_time_payment",
        payment_method="sepa",
        kind="overdue",
        state="scheduled",
        state_label="Mahnlauf geplant",
        overdue_days=13,
        outstanding_amount=D("80.00"),
        order_amount=D("80.00"),
        paid_amount=D("0.00"),
        cancellation_costs=D("0.00"),
        fees_amount=D("0.00"),
        interest_amount=D("0.00"),
        dunning_option="court",
        currency="CHF",
        opened_at=_t("2026-01-20 12:00"),
        last_step_at=None,
        next_step_at=_t("2026-01-29 12:00"),
        partner_reference=None,
        blocked_reason=None,
    ),
}

# Buyer data that must never reach an artifact or a log line.
SECRETS = ["erika@example.org", "jm@example.org", "evil@example.org", "Heidestraße"]


def insert_cases(url: str, cases: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    from dunning.db import session_scope
    from dunning.models.schema import Case

    with session_scope(url) as s:
        s.execute(insert(Case), cases)


def build_board(url: str) -> None:
    """Orders and the six cases above, in an upgraded database."""
    load_orders(url, ORDERS)
    insert_cases(url, CASES)


def many_cases(url: str, count: int, merchant: str = "bulk") -> None:
    """`count` orders and cases (for the refresh-under-read test), loaded set-based."""
    from sqlalchemy import insert

    from dunning.db import session_scope
    from dunning.models.schema import Buyer, Case, Merchant, Order

    now = AS_OF
    with session_scope(url) as s:
        s.execute(
            insert(Merchant),
            [
                {
                    "merchant_id": merchant,
                    "name": merchant,
                    "shard_key": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        s.execute(
            insert(Order),
            [
                {
                    "order_id": f"{merchant}-{i}",
                    "merchant_id": merchant,
                    "order_date": now,
                    "updated_at": now,
                    "status": "active",
                    "currency": "EUR",
                    "total_amount": D("10.00"),
                    "product_id": None,
                    "product_name": None,
                    "payment_plan": "one_time_payment",
                    "payment_method": "invoice",
                    "source": "bulk",
                    "synced_at": now,
                }
                for i in range(count)
            ],
        )
        s.execute(
            insert(Buyer),
            [
                {
                    "order_id": f"{merchant}-{i}",
                    "first_name": "Bulk",
                    "last_name": f"Buyer{i}",
                    "email": f"{merchant}{i}@example.org",
                    "street": "Weg",
                    "house_number": "1",
                    "zip_code": "10115",
                    "city": "Berlin",
                    "country_code": "DE",
                }
                for i in range(count)
            ],
        )
        s.execute(
            insert(Case),
            [
                _case(
                    order_id=f"{merchant}-{i}",
                    merchant_id=merchant,
                    state="reminder_1",
                    opened_at=now,
                    default_date=date(2026, 1, 1),
                    outstanding_amount=D("10.00"),
                )
                for i in range(count)
            ],
        )
