"""The parts on their own: the local partner's contract behaviour, the mail rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import httpx
import pytest

from dunning.tasks.mailer import MailConfigError, language, open_sink, render_reminder
from tests.factories import debtor

CLAIM = {
    "reference": "R1",
    "order_id": "o1",
    "kind": "overdue",
    "escalation": "court",
    "creditor": {"merchant_id": "m1", "name": "P GmbH"},
    "debtor": debtor(),
    "currency": "EUR",
    "contract_date": "2026-01-01",
    "default_date": "2026-01-16",
    "items": [{"type": "principal", "amount": "99.00", "due_date": "2026-01-15"}],
    "payments": [],
}


def test_partner_dedupes_and_validates(partner):
    with httpx.Client(base_url=partner.url) as c:
        first = c.post("/v1/claims", json=CLAIM, headers={"Idempotency-Key": "k1"})
        again = c.post("/v1/claims", json=CLAIM, headers={"Idempotency-Key": "k2"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["claim_id"] == again.json()["claim_id"]
        assert first.json()["open_amount"] == "99.00"
        bad = dict(CLAIM, reference="R2", debtor=dict(CLAIM["debtor"], house_number=" "))
        refused = c.post("/v1/claims", json=bad, headers={"Idempotency-Key": "k3"})
        assert refused.status_code == 422
        assert refused.json()["fields"] == {"debtor.house_number": "required"}
        claim_id = first.json()["claim_id"]
        court = c.post(f"/v1/claims/{claim_id}/court-proceedings", headers={"Idempotency-Key": "c"})
        assert court.status_code == 409  # not before the partner gave up
        partner.set_status("R1", "unsuccessful")
        court = c.post(f"/v1/claims/{claim_id}/court-proceedings", headers={"Idempotency-Key": "c"})
        assert court.status_code == 202 and court.json()["status"] == "court_requested"
        page = c.get("/v1/claims", params={"updated_since": "2000-01-01T00:00:00+00:00"}).json()
        assert [i["reference"] for i in page["items"]] == ["R1"] and page["next_cursor"] is None
    assert partner.claim_posts == {"R1": 2, "R2": 1}


def test_partner_rule_applied_on_get(partner):
    with httpx.Client(base_url=partner.url) as c:
        c.post("/v1/claims", json=CLAIM, headers={"Idempotency-Key": "k1"})
        partner.rule = lambda claim: "paid" if claim["status"] == "received" else None
        item = c.get("/v1/claims").json()["items"][0]
    assert (item["status"], item["open_amount"], item["paid_amount"]) == ("paid", "0.00", "99.00")


def payload(locale):
    return {
        "level": 1,
        "buyer": dict(CLAIM["debtor"], email="e@x.org", company_name=None, locale=locale),
        "order": {
            "order_id": "o1",
            "product": "Kurs",
            "order_date": "2026-01-01",
            "merchant_name": "Shop",
        },
        "currency": "EUR",
        "items": [
            {
                "type": "principal",
                "due_date": "2026-01-15",
                "label_de": "Kaufpreis",
                "label_en": "Purchase price",
                "amount": "1234.50",
            }
        ],
        "paid": "0.00",
        "total": "1234.50",
        "deadline": "2026-02-04",
        "option": "court",
        "creditor": {"name": "P GmbH", "address": "A", "contact": "C", "register": "R"},
    }


def test_reminder_languages_and_message_id(tmp_path):
    assert [language(x) for x in ("de", "de-AT", "en", "fr_FR", None)] == [
        "de",
        "de",
        "en",
        "en",
        "de",
    ]
    with open_sink(f"file:{tmp_path}") as sink:
        sink.send(render_reminder(payload("de-DE"), "M <m@shop.example>", "case-7-reminder_1"))
    raw = (tmp_path / "case-7-reminder_1.eml").read_bytes()
    msg = message_from_bytes(raw, policy=default_policy)
    assert msg["Message-ID"] == "<case-7-reminder_1@shop.example>"
    sent = msg["Date"].datetime  # RFC 5322: every message has an origination date
    assert sent.tzinfo is not None and abs(datetime.now(UTC) - sent) < timedelta(minutes=5)
    text = msg.get_body(("plain",)).get_content()
    assert "1.234,50 EUR" in text and "04.02.2026" in text and "zweite Mahnung" in text
    en = render_reminder(payload("en"), "m@shop.example", "k").as_bytes()
    en_text = message_from_bytes(en, policy=default_policy).get_body(("plain",)).get_content()
    assert "1,234.50 EUR" in en_text and "2026-02-04" in en_text


def test_bad_smtp_url_is_one_clear_line():
    with pytest.raises(MailConfigError, match="smtp://host:port"), open_sink("mailto:x"):
        pass


def test_message_id_is_stable_per_action_key_and_date_as_given():
    when = datetime(2026, 2, 3, 9, 30, tzinfo=UTC)
    first = render_reminder(payload("de"), "M <m@shop.example>", "case-9-reminder_2", when)
    again = render_reminder(payload("de"), "M <m@shop.example>", "case-9-reminder_2")
    other = render_reminder(payload("de"), "M <m@shop.example>", "case-9-reminder_3")
    assert first["Message-ID"] == again["Message-ID"] == "<case-9-reminder_2@shop.example>"
    assert other["Message-ID"] != first["Message-ID"]
    assert first["Date"] == "Tue, 03 Feb 2026 09:30:00 +0000"
    parsed = message_from_bytes(first.as_bytes(), policy=default_policy)
    assert parsed["Date"].datetime == when
