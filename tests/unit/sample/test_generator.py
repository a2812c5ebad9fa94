"""The sample shop: deterministic, contract-valid, and every kind a pipeline must meet."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from dunning.models.record_check import check_record, decode_line
from dunning.models.records import OrderRecord
from dunning.sample import generate_orders, mutate_orders, write_jsonl
from dunning.sample.generator import CARD_CODES, SEPA_CODES

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop() -> list[dict]:
    return list(generate_orders(3000, merchants=25, seed=11, as_of=AS_OF))


def test_deterministic():
    a = list(generate_orders(200, 5, seed=3, as_of=AS_OF))
    b = list(generate_orders(200, 5, seed=3, as_of=AS_OF))
    c = list(generate_orders(200, 5, seed=4, as_of=AS_OF))
    assert orjson.dumps(a) == orjson.dumps(b)
    assert orjson.dumps(a) != orjson.dumps(c)
    assert len({r["order_id"] for r in a}) == 200


def test_every_record_meets_the_contract(shop):
    for record in shop:
        assert isinstance(check_record(record), OrderRecord), record["order_id"]
        assert isinstance(check_record(decode_line(orjson.dumps(record))), OrderRecord)


def test_dates_lie_in_the_120_days_before_as_of(shop):
    for record in shop:
        ordered = datetime.fromisoformat(record["order_date"])
        updated = datetime.fromisoformat(record["updated_at"])
        assert AS_OF - timedelta(days=121) <= ordered <= updated < AS_OF
        for tx in record["transactions"]:
            assert datetime.fromisoformat(tx["processed_at"]) < AS_OF


def test_realistic_mix(shop):
    plans = Counter(r["payment_plan"] for r in shop)
    assert set(plans) == {"one_time_payment", "breakdown_payment", "abonnement"}
    assert set(Counter(r["payment_method"] for r in shop)) == {
        "credit_card",
        "sepa",
        "sofort",
        "paypal",
        "invoice",
    }
    assert set(Counter(r["status"] for r in shop)) == {
        "active",
        "completed",
        "cancelled",
        "refunded",
    }
    countries = Counter(r["buyer"]["country_code"] for r in shop)
    assert set(countries) == {"DE", "AT", "CH"} and countries["DE"] > countries["CH"]
    currencies = Counter(r["currency"] for r in shop)
    assert set(currencies) == {"EUR", "CHF"} and currencies["EUR"] > 10 * currencies["CHF"] / 2
    names = " ".join(r["buyer"]["first_name"] + r["buyer"]["last_name"] for r in shop)
    assert any(ch in names for ch in "äöüÄÖÜß")
    assert len({r["merchant_id"] for r in shop}) == 25


def _unpaid_due(record, day: date) -> list[int]:
    paid = {t["installment_number"] for t in record["transactions"] if t["type"] == "sale"}
    return [
        i["number"]
        for i in record["installments"]
        if date.fromisoformat(i["due_date"]) < day and i["number"] not in paid
    ]


def test_payers_of_every_kind(shop):
    today = AS_OF.date()
    never = [
        r
        for r in shop
        if r["status"] == "active"
        and not r["transactions"]
        and _unpaid_due(r, today - timedelta(days=30))
    ]
    assert len(never) > 30  # never-payers, overdue for a month and more
    late = [
        r
        for r in shop
        if any(
            t["type"] == "sale"
            and datetime.fromisoformat(t["processed_at"]).date()
            > date.fromisoformat(
                next(i for i in r["installments"] if i["number"] == t["installment_number"])[
                    "due_date"
                ]
            )
            + timedelta(days=10)
            for t in r["transactions"]
        )
    ]
    assert len(late) > 30
    partial = [
        r
        for r in shop
        if any(
            t["type"] == "sale"
            and t["amount"]
            != next(i for i in r["installments"] if i["number"] == t["installment_number"])[
                "amount"
            ]
            for t in r["transactions"]
        )
    ]
    assert len(partial) > 10
    on_time = [r for r in shop if r["status"] == "completed"]
    assert len(on_time) > 500


def test_chargebacks_refunds_and_bad_addresses(shop):
    chargebacks = [t for r in shop for t in r["transactions"] if t["type"] == "chargeback"]
    assert len(chargebacks) > 50
    assert all(t["fee"] and t["reason_code"] and t["reverses_transaction_id"] for t in chargebacks)
    codes = {t["reason_code"] for t in chargebacks}
    assert codes & set(SEPA_CODES) and codes & set(CARD_CODES)
    refunded = [r for r in shop if r["status"] == "refunded"]
    assert refunded and all(any(t["type"] == "refund" for t in r["transactions"]) for r in refunded)
    buyers = [r["buyer"] for r in shop]
    assert sum(b["house_number"] is None for b in buyers) > 20
    assert sum(b["zip_code"] is None for b in buyers) > 10
    bad_zip = [
        b
        for b in buyers
        if b["zip_code"] and len(b["zip_code"]) != {"DE": 5, "AT": 4, "CH": 4}[b["country_code"]]
    ]
    assert len(bad_zip) > 10


def test_mutate_changes_a_fraction_with_newer_snapshots(shop):
    later = AS_OF + timedelta(days=1)
    changed = list(mutate_orders(shop, 0.05, seed=2, as_of=later))
    again = list(mutate_orders(shop, 0.05, seed=2, as_of=later))
    assert orjson.dumps(changed) == orjson.dumps(again)
    assert 0.02 * len(shop) < len(changed) < 0.08 * len(shop)
    originals = {r["order_id"]: r for r in shop}
    kinds = Counter()
    for record in changed:
        assert isinstance(check_record(record), OrderRecord)
        before = originals[record["order_id"]]
        assert record["updated_at"] > before["updated_at"] or datetime.fromisoformat(
            record["updated_at"]
        ) > datetime.fromisoformat(before["updated_at"])
        assert datetime.fromisoformat(record["updated_at"]) < later
        new_tx = {t["type"] for t in record["transactions"][len(before["transactions"]) :]}
        kinds.update(new_tx or {"installment"})
        assert record != before
    assert set(kinds) >= {"sale", "chargeback", "installment"}
    assert originals["o00000001"] == shop[0]  # the input is not modified


def test_write_jsonl_plain_and_gzip(tmp_path):
    records = list(generate_orders(50, 3, seed=1, as_of=AS_OF))
    assert write_jsonl(iter(records), tmp_path / "a.jsonl") == 50
    assert write_jsonl(iter(records), tmp_path / "b.jsonl.gz") == 50
    plain = (tmp_path / "a.jsonl").read_bytes()
    assert gzip.decompress((tmp_path / "b.jsonl.gz").read_bytes()) == plain
    assert [orjson.loads(line) for line in plain.splitlines()] == records
