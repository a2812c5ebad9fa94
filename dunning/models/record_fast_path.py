"""The fast path of validation: `to_rows` turns a parsed record into rows.

The sync validates millions of records. `fast_rows` is a plain-Python pre-check of exactly
the rules of the contract (`dunning.models.records`) that only ever says "valid" for
records pydantic also accepts (tests check that it never accepts what pydantic refuses);
whatever it doubts goes to pydantic, which decides and words the message.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from dunning.models.record_rows import OrderRows, rows_from_model
from dunning.models.records import (
    AMOUNT_RE,
    BUYER_TYPES,
    COUNTRY_RE,
    CURRENCY_RE,
    DATE_RE,
    EARLIEST,
    EMAIL_ASCII_RE,
    FIRST_DATE,
    LAST_DATE,
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_PLANS,
    TIMESTAMP_RE,
    TRANSACTION_TYPES,
    RecordError,
    check_record,
    latest_moment,
)

_STATUS = frozenset(ORDER_STATUSES)
_PLANS = frozenset(PAYMENT_PLANS)
_METHODS = frozenset(PAYMENT_METHODS)
_TYPES = frozenset(TRANSACTION_TYPES)
_BUYER_TYPES = frozenset(BUYER_TYPES)
_amount_ok = AMOUNT_RE.fullmatch
_ts_ok = TIMESTAMP_RE.fullmatch
_cur_ok = CURRENCY_RE.fullmatch
_country_ok = COUNTRY_RE.fullmatch
_email_ok = EMAIL_ASCII_RE.fullmatch
_fromiso_dt = datetime.fromisoformat
_fromiso_d = date.fromisoformat
_dumps = orjson.dumps
# Due dates repeat across orders: remember the ones already proven real.
_GOOD_DATES: set[str] = set()


@lru_cache(maxsize=16)
def _last_safe_day(latest: datetime) -> str:
    """From 2000-01-02 to this local date every moment (any offset, under a day) lies in
    the bounds: a string comparison then spares comparing datetimes of different offsets."""
    return (latest - timedelta(days=2)).date().isoformat()


def _ts(value: Any, latest: datetime, safe_to: str) -> bool:
    if type(value) is not str or not _ts_ok(value):
        return False
    try:
        moment = _fromiso_dt(value)
    except ValueError:
        return False
    return "2000-01-02" <= value[:10] <= safe_to or EARLIEST <= moment <= latest


def _date_str(value: Any) -> bool:
    if value in _GOOD_DATES:
        return True
    if type(value) is not str or not DATE_RE.fullmatch(value):
        return False
    if not FIRST_DATE <= value <= LAST_DATE:
        return False
    try:
        _fromiso_d(value)
    except ValueError:
        return False
    if len(_GOOD_DATES) < 100_000:
        _GOOD_DATES.add(value)
    return True


def fast_rows(
    r: dict[str, Any], nul_free: bool = False, latest: datetime | None = None
) -> OrderRows | None:
    """Rows of `r` if it is certainly valid under the contract, else None (ask pydantic).

    Never returns rows for a record the model refuses (tests compare the two over a
    corpus of defects); it may refuse a valid one, which pydantic then accepts.
    `nul_free`: the caller proved no string holds a NUL (a JSON line without the escape
    `\\u0000` cannot), which spares a check per field. `latest`: see `latest_moment`.
    """
    if latest is None:
        latest = latest_moment()
    safe_to = _last_safe_day(latest)
    try:
        oid = r["order_id"]
        mid = r["merchant_id"]
        mname = r.get("merchant_name")
        odate = r["order_date"]
        upd = r["updated_at"]
        cur = r["currency"]
        total = r["total_amount"]
        if not (
            type(oid) is str
            and 0 < len(oid) <= 64
            and type(mid) is str
            and 0 < len(mid) <= 64
            and (mname is None or (type(mname) is str and len(mname) <= 200))
            and _ts(odate, latest, safe_to)
            and type(upd) is str
            and _ts_ok(upd)
            and r["status"] in _STATUS
            and type(cur) is str
            and _cur_ok(cur)
            and type(total) is str
            and _amount_ok(total)
            and r["payment_plan"] in _PLANS
            and r["payment_method"] in _METHODS
        ):
            return None
        updated = _fromiso_dt(upd)
        if not ("2000-01-02" <= upd[:10] <= safe_to or EARLIEST <= updated <= latest):
            return None
        product = r.get("product")
        if product is None:
            pid = pname = None
        else:
            if type(product) is not dict:
                return None
            pid = product.get("id")
            pname = product.get("name")
            if not (
                (pid is None or (type(pid) is str and len(pid) <= 64))
                and (pname is None or (type(pname) is str and len(pname) <= 300))
            ):
                return None
        b = r["buyer"]
        if type(b) is not dict:
            return None
        g = b.get
        first = b["first_name"]
        last = b["last_name"]
        email = b["email"]
        company = g("company_name")
        street = g("street")
        house = g("house_number")
        zip_code = g("zip_code")
        city = g("city")
        cc = g("country_code")
        phone = g("phone")
        locale = g("locale")
        kind = g("type")
        if kind is None:
            kind = "consumer"
        elif kind not in _BUYER_TYPES:  # an unhashable value raises TypeError: refused too
            return None
        if not (
            type(first) is str
            and len(first) <= 200
            and type(last) is str
            and len(last) <= 200
            and type(email) is str
            and len(email) <= 254
            and _email_ok(email)
            and email.index("@") <= 64
            and (company is None or (type(company) is str and len(company) <= 200))
            and (street is None or (type(street) is str and len(street) <= 200))
            and (house is None or (type(house) is str and len(house) <= 32))
            and (zip_code is None or (type(zip_code) is str and len(zip_code) <= 16))
            and (city is None or (type(city) is str and len(city) <= 200))
            and (cc is None or (type(cc) is str and _country_ok(cc)))
            and (phone is None or (type(phone) is str and len(phone) <= 64))
            and (locale is None or (type(locale) is str and len(locale) <= 8))
        ):
            return None
        buyer = (
            oid,
            first,
            last,
            email,
            company,
            street,
            house,
            zip_code,
            city,
            cc,
            phone,
            locale,
            kind,
        )
        insts = r["installments"]
        txs = r["transactions"]
        if type(insts) is not list or type(txs) is not list:
            return None
        if len(insts) > 10_000 or len(txs) > 10_000:
            return None
        inst_rows = []
        numbers: set[int] = set()
        for i in insts:
            if type(i) is not dict:
                return None
            n = i["number"]
            d = i["due_date"]
            a = i["amount"]
            if not (
                type(n) is int
                and 1 <= n <= 1_000_000
                and n not in numbers
                and _date_str(d)
                and type(a) is str
                and _amount_ok(a)
            ):
                return None
            numbers.add(n)
            inst_rows.append((oid, n, d, a))
        tx_rows = []
        tx_ids: set[str] = set()
        sales: set[str] = set()
        reversals = []
        for t in txs:
            if type(t) is not dict:
                return None
            g = t.get
            tid = t["transaction_id"]
            kind = t["type"]
            a = t["amount"]
            fee = g("fee")
            n = g("installment_number")
            rev = g("reverses_transaction_id")
            code = g("reason_code")
            at = t["processed_at"]
            if not (
                type(tid) is str
                and 0 < len(tid) <= 64
                and tid not in tx_ids
                and kind in _TYPES
                and type(a) is str
                and _amount_ok(a)
                and _ts(at, latest, safe_to)
                and (n is None or (type(n) is int and n in numbers))
                and (rev is None or (type(rev) is str and len(rev) <= 64))
                and (fee is None or (type(fee) is str and _amount_ok(fee)))
                and (code is None or (type(code) is str and len(code) <= 32))
            ):
                return None
            tx_ids.add(tid)
            if kind == "sale":
                sales.add(tid)
            else:
                reversals.append(rev)
            tx_rows.append((oid, tid, kind, a, at, n, rev, fee, code))
        for rev in reversals:
            if not rev or rev not in sales:
                return None
    except (KeyError, TypeError, ValueError):
        return None
    if not nul_free and b"\\u0000" in _dumps(
        (
            oid,
            mid,
            mname,
            pid,
            pname,
            buyer,
            [t[1] for t in tx_rows],
            [t[6] for t in tx_rows],
            [t[8] for t in tx_rows],
        )
    ):
        return None
    return OrderRows(
        (
            oid,
            mid,
            mname,
            odate,
            upd,
            r["status"],
            cur,
            total,
            pid,
            pname,
            r["payment_plan"],
            r["payment_method"],
        ),
        updated,
        buyer,
        inst_rows,
        tx_rows,
    )


def fast_check(r: Any, latest: datetime | None = None) -> bool:
    return type(r) is dict and fast_rows(r, latest=latest) is not None


def to_rows(
    obj: Any, nul_free: bool = False, latest: datetime | None = None
) -> OrderRows | RecordError:
    """Validate one parsed JSON value and turn it into rows: fast path, then pydantic."""
    if latest is None:
        latest = latest_moment()
    if type(obj) is dict:
        rows = fast_rows(obj, nul_free, latest)
        if rows is not None:
            return rows
    checked = check_record(obj, latest)
    if isinstance(checked, RecordError):
        return checked
    return rows_from_model(checked)
