# ruff: noqa: E501  (the defect table reads best one defect per line)
"""The order record contract: every rule names its field; a line decoded straight into the
contract's types (the file reader) and the same record parsed first (an API page, or a line
whose types do not fit) get the same verdict."""

from __future__ import annotations

import copy
import random
from datetime import date

import orjson
import pytest

from dunning.models.record_check import check_record, decode_line, to_rows
from dunning.models.record_rows import BUYER_COLUMNS, rows_of
from dunning.models.records import OrderRecord, RecordError
from tests.factories import T0, chargeback, order_record, refund, sale, schedule


def rich_record() -> dict:
    return order_record(
        "o1",
        installments=schedule(3, date(2026, 1, 15), "33.00"),
        transactions=[
            sale("t1", 1, "33.00", T0),
            sale("t2", 2, "33.00", T0),
            chargeback("c1", "t1", "33.00", T0, fee="7.50", code="MD06"),
            refund("r1", "t2", "33.00", T0),
        ],
    )


def via_line(record, latest=None):
    """As the file reader does it: the line typed if it fits, else parsed plainly; checked."""
    line = orjson.dumps(record)
    value = decode_line(line)
    if value is None:
        value = orjson.loads(line)
    return check_record(value, latest, nul_free=b"\\u0000" not in line)


def test_valid_record_passes_both_routes():
    record = rich_record()
    assert decode_line(orjson.dumps(record)) is not None
    assert isinstance(check_record(record), OrderRecord)
    assert isinstance(via_line(record), OrderRecord)
    rows = rows_of(via_line(record))
    assert rows.order[0] == "o1" and len(rows.installments) == 3 and len(rows.transactions) == 4
    assert rows == to_rows(record)
    assert rows.installments[0][2:] == ("2026-01-15", "33.00")  # as received
    assert rows.order[4] == record["updated_at"]


def _set(path, value):
    def change(r):
        target = r
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value

    return change


_DELETE = object()

# (name, change, expected field, words the reason must contain)
DEFECTS = [
    ("negative amount", _set(["total_amount"], "-5.00"), "total_amount", "non-negative"),
    ("3 decimals", _set(["installments", 1, "amount"], "1.234"), "installments[1].amount", "2"),
    ("amount as number", _set(["total_amount"], 99.0), "total_amount", "decimal string"),
    ("amount too big", _set(["total_amount"], "1" * 13), "total_amount", "12 digits"),
    ("unknown status", _set(["status"], "paid"), "status", "must be one of"),
    ("unknown plan", _set(["payment_plan"], "monthly"), "payment_plan", "must be one of"),
    ("unknown method", _set(["payment_method"], "bitcoin"), "payment_method", "must be one of"),
    ("unknown tx type", _set(["transactions", 0, "type"], "payout"), "transactions[0].type", ""),
    ("missing buyer", _set(["buyer"], _DELETE), "buyer", "missing"),
    ("buyer null", _set(["buyer"], None), "buyer", "wrong type"),
    ("missing first name", _set(["buyer", "first_name"], _DELETE), "buyer.first_name", ""),
    ("due date format", _set(["installments", 0, "due_date"], "15.01.2026"), "installments[0].due_date", "ISO date"),
    ("due date unreal", _set(["installments", 0, "due_date"], "2026-02-30"), "installments[0].due_date", "real"),
    ("naive timestamp", _set(["updated_at"], "2026-01-01T00:00:00"), "updated_at", "offset"),
    ("garbage timestamp", _set(["order_date"], "yesterday"), "order_date", "ISO timestamp"),
    ("bad currency", _set(["currency"], "EURO"), "currency", "ISO 4217"),
    ("lowercase currency", _set(["currency"], "eur"), "currency", "ISO 4217"),
    ("order id number", _set(["order_id"], 123), "order_id", "wrong type"),
    ("empty order id", _set(["order_id"], ""), "order_id", ""),
    ("order id too long", _set(["order_id"], "x" * 65), "order_id", "64"),
    ("NUL in name", _set(["buyer", "last_name"], "Mü\x00ller"), "buyer.last_name", "NUL"),
    ("country name", _set(["buyer", "country_code"], "Germany"), "buyer.country_code", "alpha-2"),
    ("zip too long", _set(["buyer", "zip_code"], "1" * 17), "buyer.zip_code", "16"),
    ("unknown buyer type", _set(["buyer", "type"], "company"), "buyer.type", "must be one of"),
    ("buyer type number", _set(["buyer", "type"], 1), "buyer.type", "must be one of"),
    ("buyer type list", _set(["buyer", "type"], ["business"]), "buyer.type", ""),
    ("installment 0", _set(["installments", 0, "number"], 0), "installments[0].number", ""),
    ("installment bool", _set(["installments", 0, "number"], True), "installments[0].number", ""),
    ("duplicate installment", _set(["installments", 1, "number"], 1), "installments[1].number", "twice"),
    ("sale of unknown installment", _set(["transactions", 0, "installment_number"], 9), "transactions[0].installment_number", "does not have"),
    ("chargeback of unknown sale", _set(["transactions", 2, "reverses_transaction_id"], "zz"), "transactions[2].reverses_transaction_id", "not a sale"),
    ("refund without sale", _set(["transactions", 3, "reverses_transaction_id"], None), "transactions[3].reverses_transaction_id", "must name"),
    ("duplicate transaction id", _set(["transactions", 1, "transaction_id"], "t1"), "transactions[1].transaction_id", "duplicate"),
    ("fee with comma", _set(["transactions", 2, "fee"], "7,50"), "transactions[2].fee", ""),
    ("two addresses", _set(["buyer", "email"], "victim@example.org, attacker@evil.example"), "buyer.email", "not a list"),
    ("address and header", _set(["buyer", "email"], "victim@example.org\nBcc: attacker@evil.example"), "buyer.email", "line breaks"),
    ("display-name form", _set(["buyer", "email"], "Erika <erika@example.org>"), "buyer.email", "bare address"),
    ("address without domain", _set(["buyer", "email"], "erika"), "buyer.email", "not a valid"),
    ("updated far future", _set(["updated_at"], "9999-12-31T23:59:59-12:00"), "updated_at", "between 2000-01-01"),
    ("updated year 9999 UTC", _set(["updated_at"], "9999-12-31T23:59:59Z"), "updated_at", "a day after"),
    ("order before 2000", _set(["order_date"], "1999-12-31T23:59:59+00:00"), "order_date", "2000-01-01"),
    ("processed year 1", _set(["transactions", 0, "processed_at"], "0001-01-01T00:00:00+14:00"), "transactions[0].processed_at", "2000-01-01"),
    ("due date 1999", _set(["installments", 0, "due_date"], "1999-12-31"), "installments[0].due_date", "2100-12-31"),
    ("due date 2101", _set(["installments", 0, "due_date"], "2101-01-01"), "installments[0].due_date", "2100-12-31"),
    ("installments not a list", _set(["installments"], {"number": 1}), "installments", "wrong type"),
    ("product not an object", _set(["product"], "course"), "product", "wrong type"),
    ("transaction not an object", _set(["transactions", 0], "t1"), "transactions[0]", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "words"), [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS]
)
def test_each_defect_names_its_field(change, field, words):
    record = rich_record()
    change(record)
    verdict = check_record(record)
    assert isinstance(verdict, RecordError), verdict
    assert verdict.field == field, verdict
    assert words in verdict.reason, verdict
    assert via_line(record) == verdict
    assert to_rows(record) == verdict


@pytest.mark.parametrize("value", [[], "order", 42, None, True])
def test_non_objects_are_refused(value):
    verdict = check_record(value)
    assert isinstance(verdict, RecordError) and verdict.field == "(record)"
    assert "JSON object" in verdict.reason


def test_optional_fields_may_be_missing_or_null():
    record = rich_record()
    del record["product"], record["merchant_name"]
    for key in ("company_name", "street", "house_number", "zip_code", "phone", "locale"):
        record["buyer"][key] = None
    del record["buyer"]["country_code"]
    record["extra_field"] = {"kept": "ignored"}
    assert isinstance(via_line(record), OrderRecord)
    assert isinstance(check_record(record), OrderRecord)


@pytest.mark.parametrize(
    ("given", "stored"), [(_DELETE, "consumer"), (None, "consumer"), ("business", "business")]
)
def test_buyer_type_defaults_to_consumer_on_both_routes(given, stored):
    record = rich_record()
    _set(["buyer", "type"], given)(record)
    line = rows_of(via_line(record))
    parsed = rows_of(check_record(record))
    assert line.buyer == parsed.buyer
    assert dict(zip(BUYER_COLUMNS, line.buyer, strict=True))["buyer_type"] == stored


def test_the_bound_follows_the_runs_as_of():
    """A stamp a few hours after as_of passes; two days after it is refused, on both routes."""
    from datetime import UTC, datetime, timedelta

    from dunning.models.records import latest_moment

    as_of = datetime(2026, 1, 1, 12, tzinfo=UTC)
    latest = latest_moment(as_of)
    for later, ok in ((timedelta(hours=20), True), (timedelta(days=2), False)):
        record = rich_record()
        record["updated_at"] = (as_of + later).isoformat()
        assert isinstance(via_line(record, latest), OrderRecord) is ok
        assert isinstance(check_record(record, latest), OrderRecord) is ok


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [
        ("2000-01-01T00:30:00+01:00", False),  # 1999-12-31 23:30 UTC
        ("2000-01-01T00:00:00-01:00", True),
        ("2000-01-02T00:00:00+23:59", True),  # 2000-01-01 00:01 UTC
        ("2026-01-03T11:59:59+00:00", True),  # latest: 2026-01-03 12:00 UTC
        ("2026-01-03T12:00:01+00:00", False),
        ("2026-01-02T23:59:59-12:00", True),  # 2026-01-03 11:59:59 UTC
        ("2026-01-02T23:59:59-13:00", False),  # 2026-01-03 12:59:59 UTC
        ("2026-01-01T23:59:59-23:59", True),  # the last local date taken by its string
    ],
)
def test_bounds_at_the_edges_and_extreme_offsets(stamp, ok):
    """The bounds are moments, whatever the offset: both routes agree at the edges."""
    from datetime import UTC, datetime

    latest = datetime(2026, 1, 3, 12, tzinfo=UTC)
    record = rich_record()
    record["updated_at"] = record["order_date"] = stamp
    for t in record["transactions"]:
        t["processed_at"] = stamp
    assert isinstance(via_line(record, latest), OrderRecord) is ok
    assert isinstance(check_record(record, latest), OrderRecord) is ok


ADDRESSES = [  # (address, valid)
    ("erika@example.org", True), ("o'brien+1@example.org", True),
    ("a.b-c@sub.example.co.uk", True), ("x@müller.de", True), ("a@xn--mller-kva.de", True),
    ("a" * 64 + "@x.org", True), ("a" * 65 + "@x.org", False),
    ("a@" + "b" * 63 + ".org", True), ("a@" + "b" * 64 + ".org", False),
    ("a@" + ("b" * 61 + ".") * 4 + "org", True),  # 253 characters
    ("a@" + ("b" * 62 + ".") * 4 + "org", False),  # 257
    ("a..b@x.org", False), (".a@x.org", False), ("a.@x.org", False), ("a@-x.org", False),
    ("a@x-.org", False), ("a@x.o", False), ("a@x.org.", False), ("a@x_y.org", False),
    ("a@x", False), ("a b@x.org", False), ("a@x.org\n", False), ('"a"@x.org', False),
    ("a@[127.0.0.1]", False),
]  # fmt: skip


@pytest.mark.parametrize(("email", "valid"), ADDRESSES)
def test_the_address_rule_on_both_routes(email, valid):
    record = rich_record()
    record["buyer"]["email"] = email
    assert isinstance(check_record(record), OrderRecord) is valid
    assert isinstance(via_line(record), OrderRecord) is valid


_MUTANTS = [
    None, "", "x", -1, 0, 1, 2.5, True, [], {}, "2026-01-01", "2026-01-01T00:00:00Z",
    "2026-13-01T00:00:00+01:00", "12.345", "12.34", "-0.01", "0", "EUR", "sale", "\x00",
    "ä" * 65, "1" * 13, 10**7, "business", "consumer", "a@b.de, c@d.de", "x@y.de\nBcc: z@w.de",
    "e@x.org", "9999-12-31T23:59:59-12:00", "1999-12-31T23:59:59Z", "2101-01-01", "1999-12-31",
]  # fmt: skip


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield (*prefix, i)
            yield from _paths(inner, (*prefix, i))


def test_both_routes_agree_on_mutants():
    """Random single and double mutations of a rich record: the typed line and the parsed
    value get the same verdict, a refusal with the same field and reason."""
    rng = random.Random(7)
    base = rich_record()
    paths = list(_paths(base))
    accepted = refused = 0
    for _ in range(3000):
        record = copy.deepcopy(base)
        for _ in range(rng.choice((1, 1, 2))):
            path = rng.choice(paths)
            target = record
            try:
                for key in path[:-1]:
                    target = target[key]
                if rng.random() < 0.1 and isinstance(target, dict):
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = rng.choice(_MUTANTS)
            except (KeyError, IndexError, TypeError):
                continue
        line = via_line(record)  # the wall clock bounds the stamps
        parsed = check_record(record)
        if isinstance(parsed, OrderRecord):
            assert line == parsed, (record, line)
            accepted += 1
        else:
            assert line == parsed, (record, line, parsed)
            refused += 1
    assert accepted > 100 and refused > 1000  # both sides were exercised
