# ruff: noqa: E501  (the corpus reads best one defect per line)
"""A corpus of bad input: every defect is quarantined with the field it breaks, and every
valid record around it arrives. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from sqlalchemy import select

from dunning.db import get_engine
from dunning.models.schema import LastDataUpdate, Order, QuarantinedRecord
from dunning.servers.orders_api import start
from dunning.tasks.sync_run import run_sync
from tests.factories import T0, chargeback, order_record, refund, sale, schedule

AS_OF = datetime(2026, 11, 26, 6, tzinfo=UTC)


def _rec(oid: str, **changes) -> dict:
    base = order_record(
        oid,
        installments=schedule(2, T0.date(), "49.50"),
        transactions=[sale(f"{oid}-s1", 1, "49.50", T0)],
    )
    base.update(changes)
    return base


def _json(record: dict) -> bytes:
    return orjson.dumps(record)


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def _buyer(oid: str, **changes) -> dict:
    record = _rec(oid)
    record["buyer"] = dict(record["buyer"], **changes)
    return record


# (line bytes, expected quarantine field, words in the reason)
DEFECTS: list[tuple[bytes, str, str]] = [
    (b'{"order_id": "d01", "merchant_id": ', "(line)", "not valid JSON"),
    (_json(_buyer("d02", city="Köln")).replace("Köln".encode(), b"K\xf6ln"), "(line)", "not UTF-8"),
    (b'{"order_id": "d03", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}', "(line)", "bytes long"),
    (b"[1, 2, 3]", "(record)", "JSON object"),
    (b"null", "(record)", "JSON object"),
    (_json(_rec("d06", total_amount=99)), "total_amount", "decimal string"),
    (_json(_rec("d07", installments=schedule(1, T0.date(), "-49.50"))), "installments[0].amount", "non-negative"),
    (_json(_rec("d08", transactions=[sale("s", 1, "49.505", T0)])), "transactions[0].amount", "2 places"),
    (_json(_rec("d09", status="overdue")), "status", "must be one of"),
    (_json(_rec("d10", payment_method="cash")), "payment_method", "must be one of"),
    (_json(_without(_rec("d11"), "buyer")), "buyer", "missing"),
    (_json(_rec("d12", installments=[{"number": 1, "due_date": "next friday", "amount": "1.00"}], transactions=[])), "installments[0].due_date", "ISO date"),
    (_json(_rec("d13", transactions=[sale("s1", 1, "49.50", T0), chargeback("c1", "nope", "49.50", T0)])), "transactions[1].reverses_transaction_id", "not a sale"),
    (_json(_rec("d14", transactions=[sale("s1", 1, "49.50", T0), sale("s1", 2, "49.50", T0)])), "transactions[1].transaction_id", "duplicate"),
    (_json(_rec("d15", transactions=[sale("s1", 7, "49.50", T0)])), "transactions[0].installment_number", "does not have"),
    (_json(_rec("d16", updated_at="2026-01-01T12:00:00")), "updated_at", "offset"),
    (_json(_rec("d17", currency="€")), "currency", "ISO 4217"),
    (_json(_rec("d18-" + "x" * 70)), "order_id", "64"),
    (_json(_buyer("d19", city="Kö\x00ln")), "buyer.city", "NUL"),
    (_json(_buyer("d20", country_code="Deutschland")), "buyer.country_code", "alpha-2"),
    (_json(_rec("d21", installments=[{"number": "1", "due_date": "2026-01-15", "amount": "1.00"}], transactions=[])), "installments[0].number", "integer"),
    (_json(_rec("d22", transactions=[dict(sale("s1", 1, "49.50", T0), type="payout")])), "transactions[0].type", "must be one of"),
    (_json(_without(_rec("d23"), "order_id")), "order_id", "missing"),
    (_json(_buyer("d24", zip_code="D-12345-67890-XYZ")), "buyer.zip_code", "16"),
    (_json(_rec("d25", installments=schedule(1, T0.date(), "1.00") * 2, transactions=[])), "installments[1].number", "twice"),
    (_json(_rec("d26", transactions=[sale("s1", 1, "49.50", T0), dict(refund("r1", "s1", "49.50", T0), reverses_transaction_id=None)])), "transactions[1].reverses_transaction_id", "must name"),
    (_json(_rec("d27", product="Kurs")), "product", "wrong type"),
    (_json(_rec("d28", order_date="31.12.2025 10:00")), "order_date", "ISO timestamp"),
    (_json(_rec("d29", merchant_id=None)), "merchant_id", "wrong type"),
    (_json(_rec("d30", transactions=[dict(chargeback("c1", "s1", "1.00", T0), fee=-3)])), "transactions[0].fee", "decimal string"),
    (_json(_rec("d31", total_amount="9\x009")), "total_amount", "non-negative"),  # a NUL quoted in the reason
]  # fmt: skip


def corpus_file(tmp_path) -> tuple[str, list[dict], list[tuple[bytes, str, str]]]:
    """Valid records around every defect, a blank line and a BOM: (path, valid, defects)."""
    valid = [_rec(f"ok{i:02d}") for i in range(len(DEFECTS) + 1)]
    lines = [b"\xef\xbb\xbf" + _json(valid[0])]
    for (line, _, _), good in zip(DEFECTS, valid[1:], strict=True):
        lines += [line, b"   ", _json(good)]
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path), valid, DEFECTS


def test_every_defect_is_quarantined_with_its_field(migrated_db, tmp_path):
    assert len({field for _, field, _ in DEFECTS}) >= 20
    path, valid, defects = corpus_file(tmp_path)
    result = run_sync(migrated_db, path, batch_size=7, as_of=AS_OF)
    assert result.counts.inserted == len(valid)
    assert result.counts.quarantined == len(defects)
    assert result.counts.read == len(valid) + len(defects)
    with get_engine(migrated_db).connect() as conn:
        stored = set(conn.scalars(select(Order.order_id)))
        entries = conn.execute(select(QuarantinedRecord).order_by(QuarantinedRecord.id)).all()
    assert stored == {r["order_id"] for r in valid}  # nothing valid lost
    by_line = {int(e.position.split()[1]): e for e in entries}
    for k, (line, field, words) in enumerate(defects):
        entry = by_line[2 + 3 * k]  # line 1 valid (with BOM); then defect, blank, valid
        assert entry.field == field, (k, entry.field, entry.reason)
        assert words in entry.reason, (k, entry.reason)
        assert entry.source == f"file:{path}" and entry.resolved_at is None
        if field != "(line)":  # the payload is kept whole
            assert orjson.loads(entry.raw) == orjson.loads(line)
    huge = by_line[2 + 3 * 2]
    # issue 19: a line that cannot be parsed is kept as a short excerpt, never whole
    assert len(huge.raw) < 300 and "[cut: 10485" in huge.raw and "10485" in huge.reason
    not_utf8 = by_line[2 + 3 * 1]
    assert len(not_utf8.raw) < 300 and "0xf6" in not_utf8.reason
    # a rerun quarantines nothing twice
    again = run_sync(migrated_db, path, batch_size=7, full=True, as_of=AS_OF)
    assert again.counts.quarantined == len(defects)
    with get_engine(migrated_db).connect() as conn:
        assert len(conn.execute(select(QuarantinedRecord.id)).all()) == len(defects)


def test_empty_file_syncs_nothing_and_says_so(migrated_db, tmp_path, cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = run_sync(migrated_db, str(empty), as_of=AS_OF)
    assert result.counts.read == 0 and result.watermark_after is None
    with get_engine(migrated_db).connect() as conn:
        assert conn.scalar(select(LastDataUpdate.name)) == f"sync:file:{empty}"
    shown = cli("sync", "--source", str(empty), env={"DUNNING_DATABASE_URL": migrated_db})
    assert shown.returncode == 0, shown.stderr
    assert "Nothing new at the source" in shown.stdout


def test_api_delivers_the_same_defects(migrated_db):
    """Through the orders API: the JSON-level defects (bytes-level ones cannot travel)."""
    records = []
    expected = {}
    for k, (line, field, words) in enumerate(DEFECTS):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if len(line) > 100_000:
            continue
        records.append(value)
        expected[k] = (field, words)
        records.append(_rec(f"ok{k:02d}"))
    with start(records) as server:
        result = run_sync(migrated_db, server.url, batch_size=5, as_of=AS_OF)
    assert result.counts.quarantined == len(expected) > 20
    assert result.counts.inserted == len(expected)
    with get_engine(migrated_db).connect() as conn:
        fields = sorted(conn.scalars(select(QuarantinedRecord.field)))
    assert fields == sorted(f for f, _ in expected.values())
