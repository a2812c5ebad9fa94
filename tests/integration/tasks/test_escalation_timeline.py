"""~90 simulated days, a run every 10 days, per dunning option: each case gets one reminder
1, one reminder 2 and one handover; the court and cancellation branches are reached;
payments stop or lower the claim; the § 498 BGB guard holds cancellation back."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select, update

from dunning.db import session_scope
from dunning.models.schema import CaseHistory, CaseItem
from dunning.tasks import merchant_settings as store
from dunning.tasks.escalate import run_escalation
from dunning.tasks.report import refresh_report
from tests.escalation_fixtures import (
    actions,
    at,
    case,
    join_installment,
    make_case,
    one_time,
    pay,
    settings_for,
)
from tests.factories import order_record, schedule

D0 = date(2026, 1, 16)  # the day after the first due date (2026-01-15)
DAYS = range(0, 100, 10)


def configure(url, cfg, merchant, **changes):
    with session_scope(url) as s:
        store.change(s, merchant, changes, at(D0 - timedelta(days=40)), "test", cfg)


def history(url, case_id):
    with session_scope(url) as s:
        return [
            h.to_state
            for h in s.scalars(
                select(CaseHistory).where(CaseHistory.case_id == case_id).order_by(CaseHistory.id)
            )
        ]


def test_court_option_timeline(migrated_db, smtp, partner):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url)
    configure(
        migrated_db, cfg, "m1", dunning_option="court", reminder_fee="2.50", interest_enabled=True
    )
    never = make_case(migrated_db, one_time("never"))
    pays = make_case(migrated_db, one_time("pays"))
    partial = make_case(migrated_db, one_time("partial"))
    late = make_case(migrated_db, one_time("late"))
    for day in DAYS:
        as_of = at(D0 + timedelta(days=day))
        if day == 20:
            pay(migrated_db, pays, "105.00")  # principal, fee and interest: paid in full
            pay(migrated_db, partial, "40.00")
        if day == 40:
            partner.set_status(f"DUN-{never}", "unsuccessful")
        if day == 50:
            pay(migrated_db, late, "500.00")  # pays everything while with the partner
        run_escalation(as_of, migrated_db, settings=cfg)
        if day == 0:
            assert {case(migrated_db, c).state for c in (never, pays, partial, late)} == {
                "scheduled"
            }

    assert history(migrated_db, never) == ["reminder_1", "reminder_2", "with_partner", "court"]
    assert case(migrated_db, never).partner_status in ("court_requested", "court_filed")
    assert partner.court_posts[f"DUN-{never}"] == 1
    assert history(migrated_db, pays) == ["reminder_1", "paid"]
    assert history(migrated_db, partial) == ["reminder_1", "reminder_2", "with_partner"]
    assert history(migrated_db, late) == ["reminder_1", "reminder_2", "with_partner", "paid"]

    keys = box.by_key()
    assert set(keys.values()) == {1}
    assert {k for k in keys if k.endswith("reminder_1")} == {
        f"case-{c}-reminder_1" for c in (never, pays, partial, late)
    }
    assert {k for k in keys if k.endswith("reminder_2")} == {
        f"case-{c}-reminder_2" for c in (never, partial, late)
    }
    assert dict(partner.claim_posts) == {f"DUN-{c}": 1 for c in (never, partial, late)}

    # Partial payment: the claim went on, lower; the handover carries the lower claim.
    c = case(migrated_db, partial)
    assert c.paid_amount == Decimal("40.00") and c.fees_amount == Decimal("5.00")
    assert c.interest_amount > 0
    sent = partner.received(f"DUN-{partial}")
    # Contract v2 (§ 13a RDG): the items gross, each interest period with its base, days
    # and rate, and the payments with the day they arrived.
    total = sum(Decimal(i["amount"]) for i in sent["items"])
    interest_sent = sum(Decimal(i["amount"]) for i in sent["items"] if i["type"] == "interest")
    assert total == Decimal("99.00") + Decimal("5.00") + interest_sent
    assert 0 < interest_sent < c.interest_amount  # it kept running after the handover
    assert [p["amount"] for p in sent["payments"]] == ["40.00"]
    assert [(i["type"], i["amount"]) for i in sent["items"][:3]] == [
        ("principal", "99.00"),
        ("reminder_fee", "2.50"),
        ("reminder_fee", "2.50"),
    ]
    interest = [i for i in sent["items"] if i["type"] == "interest"]
    assert interest and all(i["principal_base"] and i["rate_percent"] for i in interest)
    assert interest[0]["from"] == "2026-01-16" and interest[0]["rate_percent"] == "6.27"
    assert sent["order_id"] == "partial" and sent["kind"] == "overdue"
    assert sent["debtor"]["type"] == "consumer"
    assert sent["first_reminder_date"] == (D0 + timedelta(days=10)).isoformat()
    assert sent["default_date"] == "2026-01-16"  # the first day of default
    assert sent["debtor"]["street"] and sent["creditor"]["name"]
    reminder2 = next(m for m in box.messages if m["X-Dunning-Key"] == f"case-{partial}-reminder_2")
    text = reminder2.get_body(("plain",)).get_content()
    assert "bereits gezahlt: -40,00 EUR" in text
    assert "spätestens " + (D0 + timedelta(days=30)).strftime("%d.%m.%Y") in text
    assert "gerichtliche Mahnverfahren" in text

    # Paid while with the partner: the partner was told (recall, reason paid), once.
    assert partner.recall_posts[f"DUN-{late}"] == 1
    assert partner.claim(f"DUN-{late}")["status"] == "recalled"
    assert [a.step for a in actions(migrated_db, late)][-1] == "recall"
    # Paid mid-ladder: no step after it.
    assert [a.step for a in actions(migrated_db, pays)] == ["reminder_1"]


def _plan_with_cancellation(migrated_db, smtp, partner, orders_api):
    smtp_url, _ = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url, orders_api.url)
    configure(migrated_db, cfg, "m2", dunning_option="cancellation", cancellation_costs="30.00")
    # 24 monthly installments of 50.00 = 1200.00 over two years: 10 % = 120.00 must be in
    # default, across at least two consecutive installments.
    plan = order_record(
        "plan",
        "m2",
        payment_plan="breakdown_payment",
        total_amount="1200.00",
        installments=schedule(24, date(2026, 1, 15), "50.00"),
    )
    return cfg, make_case(migrated_db, plan, option="cancellation")


def _run_plan(migrated_db, cfg, plan_case, on_day=None):
    states = {}
    for day in DAYS:
        as_of = at(D0 + timedelta(days=day))
        if day == 30:  # installment 2 (due 2026-02-14) fell overdue: detection joins it
            join_installment(migrated_db, plan_case, 2, date(2026, 2, 14), "50.00", as_of)
        if day == 60:  # installment 3 (due 2026-03-16)
            join_installment(migrated_db, plan_case, 3, date(2026, 3, 16), "50.00", as_of)
        if on_day:
            on_day(day)
        run_escalation(as_of, migrated_db, settings=cfg)
        states[day] = case(migrated_db, plan_case).state
    return states


def test_498_installment_plan_termination_notice_then_cancellation(
    migrated_db, smtp, partner, orders_api, cli
):
    """Reminder 1, reminder 2, handover, termination notice (§ 498 BGB), and the
    cancellation only after its 14 days, over the real partner, SMTP and orders API."""
    _, box = smtp
    cfg, plan_case = _plan_with_cancellation(migrated_db, smtp, partner, orders_api)
    states = _run_plan(migrated_db, cfg, plan_case)
    # 100.00 in default (two installments) < 120.00 holds it back on days 30 to 50.
    assert states[30] == states[40] == states[50] == "with_partner"
    assert states[60] == states[70] == "termination_notice"  # 150.00 >= 120.00: notice
    assert states[80] == "order_cancelled"  # deadline day 74 passed, the guard still holds
    assert history(migrated_db, plan_case) == [
        "reminder_1",
        "reminder_2",
        "with_partner",
        "termination_notice",
        "order_cancelled",
    ]
    assert orders_api.cancel_calls["plan"] == 1
    notice = next(m for m in box.messages if m["X-Dunning-Key"].endswith("termination_notice"))
    text = notice.get_body(("plain",)).get_content()
    assert "Kündigungsandrohung" in str(notice["Subject"]) or "K=C3=BCndigung" in str(
        notice["Subject"]
    )
    deadline = (D0 + timedelta(days=60 + 14)).strftime("%d.%m.%Y")
    assert "Rückständiger Betrag: 150,00 EUR" in text and deadline in text
    assert "§ 498" in text
    sent = partner.received(f"DUN-{plan_case}")
    assert [(i["type"], i.get("due_date")) for i in sent["items"]] == [
        ("principal", "2026-01-15"),
        ("principal", "2026-02-14"),
    ]
    assert sent["escalation"] == "cancellation" and sent["order_id"] == "plan"
    # Installment 3 fell due after the handover: added to the partner's claim, once.
    claim_id = case(migrated_db, plan_case).partner_claim_id
    added = partner.added_items(claim_id)
    assert [(i["type"], i.get("due_date"), i["amount"]) for i in added] == [
        ("principal", "2026-03-16", "50.00"),
        ("cancellation_costs", None, "30.00"),
    ]
    assert case(migrated_db, plan_case).partner_reference == claim_id  # the partner's id
    refresh_report(migrated_db, at(D0 + timedelta(days=90)))
    shown = cli("cases", "--format", "json", env={"DUNNING_DATABASE_URL": migrated_db})
    rows = {r["case_id"]: r for r in json.loads(shown.stdout)}
    assert rows[plan_case]["partner_reference"] == claim_id  # operators quote it on the phone


def test_498_arrears_paid_within_the_notice_period_no_cancellation(
    migrated_db, smtp, partner, orders_api
):
    cfg, plan_case = _plan_with_cancellation(migrated_db, smtp, partner, orders_api)
    paid_at = at(D0 + timedelta(days=65))

    def pay_arrears(day):
        if day == 70:  # installments 1 and 2 paid on day 65, inside the notice period
            for n in (1, 2):
                pay(migrated_db, plan_case, "50.00", paid_at + timedelta(minutes=n), n)
            with session_scope(migrated_db) as s:  # detection would write this
                s.execute(
                    update(CaseItem)
                    .where(CaseItem.case_id == plan_case, CaseItem.installment_number.in_([1, 2]))
                    .values(paid_amount=Decimal("50.00"))
                )

    states = _run_plan(migrated_db, cfg, plan_case, pay_arrears)
    assert states[60] == states[70] == "termination_notice"
    assert states[80] == states[90] == "with_partner"  # one installment left: no § 498
    assert history(migrated_db, plan_case)[-1] == "with_partner"
    assert "plan" not in orders_api.cancel_calls
    claim_id = case(migrated_db, plan_case).partner_claim_id
    told = partner.payments_of(claim_id)
    assert [(p["amount"], p["paid_at"][:10]) for p in told] == [
        ("50.00", paid_at.date().isoformat()),
        ("50.00", paid_at.date().isoformat()),
    ]


def test_cancellation_option_timeline(migrated_db, smtp, partner, orders_api):
    smtp_url, box = smtp
    cfg = settings_for(migrated_db, smtp_url, partner.url, orders_api.url)
    configure(migrated_db, cfg, "m2", dunning_option="cancellation", cancellation_costs="30.00")
    single = make_case(migrated_db, one_time("single", "m2"), option="cancellation")
    for day in DAYS:
        run_escalation(at(D0 + timedelta(days=day)), migrated_db, settings=cfg)
    assert history(migrated_db, single) == [
        "reminder_1",
        "reminder_2",
        "with_partner",
        "order_cancelled",
    ]
    c = case(migrated_db, single)
    assert c.cancellation_costs == Decimal("30.00")
    assert c.outstanding_amount == Decimal("129.00")
    assert orders_api.cancel_calls["single"] == 1
    assert orders_api.cancelled["single"] == f"case-{single}-cancel_order"
    assert set(box.by_key().values()) == {1} and len(box.messages) == 2
    # A one-time order: no § 498 wording anywhere.
    with session_scope(migrated_db) as s:
        reasons = [
            h.reason for h in s.scalars(select(CaseHistory).where(CaseHistory.case_id == single))
        ]
    assert not any("498" in (r or "") for r in reasons)
