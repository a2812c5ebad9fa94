"""The sample shop generator: order records as the platform would deliver them.

Deterministic: the same (n, merchants, seed, as_of) gives the same records, byte for byte.
Orders are dated over the ~120 days before `as_of`, so a pipeline run at `as_of` meets
every kind: on-time payers, late payers, partial payers, never-payers, chargebacks (with
the bank's fee and SEPA or card reason codes), refunds, cancelled orders; one-time
payments, installment plans and subscriptions; AT/CH/DE buyers (umlauts included), most
in EUR, some in CHF; and a few incomplete addresses (no house number, no postal code, a
postal code that does not fit the country) that the case rules must block.

Every record satisfies the contract (order-record.schema.json); tests check that.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

HISTORY_DAYS = 120

FIRST_NAMES = (
    "Jürgen", "Jörg", "Björn", "Sören", "Günther", "Ülkü", "Özlem", "Käthe", "Änne", "Märta",
    "Lukas", "Leonie", "Maximilian", "Sophie", "Felix", "Hannah", "Paul", "Marie", "Jonas",
    "Lea", "Elias", "Mia", "Noah", "Emma", "Ben", "Anna", "Luca", "Lina", "Tobias", "Sarah",
    "André", "Renée", "Zoë", "Hélène", "François", "Gisela", "Ute", "Horst", "Dieter", "Jana",
)  # fmt: skip
LAST_NAMES = (
    "Müller", "Schäfer", "Köhler", "Böhm", "Krüger", "Gößwein", "Weiß", "Groß", "Jäger",
    "Özdemir", "Schmidt", "Schneider", "Fischer", "Meyer", "Wagner", "Becker", "Hoffmann",
    "Schulz", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Neumann", "Schwarz", "Zimmermann",
    "Braun", "Hofmann", "Hartmann", "Lange", "Huber", "Gruber", "Steiner", "Moser", "Brunner",
    "Keller", "Meier", "Baumgartner", "Frei", "Studer",
)  # fmt: skip
STREETS = (
    "Hauptstraße", "Schloßallee", "Bahnhofstraße", "Gartenweg", "Am Mühlbach", "Lindenstraße",
    "Kirchgasse", "Rosenstraße", "Bergstraße", "Dorfplatz", "Mozartgasse", "Seestrasse",
    "Zürcherstrasse", "Große Bleichen", "Königsallee", "Münsterplatz",
)  # fmt: skip
CITIES = {
    "DE": (("10115", "Berlin"), ("20095", "Hamburg"), ("80331", "München"), ("50667", "Köln"),
           ("60311", "Frankfurt am Main"), ("70173", "Stuttgart"), ("04109", "Leipzig"),
           ("01067", "Dresden"), ("90402", "Nürnberg"), ("48143", "Münster")),
    "AT": (("1010", "Wien"), ("8010", "Graz"), ("4020", "Linz"), ("5020", "Salzburg"),
           ("6020", "Innsbruck"), ("9020", "Klagenfurt")),
    "CH": (("8001", "Zürich"), ("3011", "Bern"), ("4051", "Basel"), ("1201", "Genève"),
           ("6003", "Luzern"), ("9000", "St. Gallen")),
}  # fmt: skip
MERCHANT_WORDS = (
    ("Fitness", "Yoga", "Koch", "Sprach", "Finanz", "Foto", "Musik", "Coaching", "Marketing",
     "Achtsamkeits", "Programmier", "Garten"),
    ("Akademie", "Schule", "Werkstatt", "Club", "Studio", "Campus", "Manufaktur", "Lounge"),
    ("Müller", "Schäfer", "Weber", "Huber", "Kühn", "Brändle", "Lehmann", "Vogel"),
)  # fmt: skip
PRODUCTS = (
    ("Online-Kurs Grundlagen", 4900),
    ("Masterclass Premium", 99700),
    ("Coaching-Programm 12 Wochen", 149700),
    ("E-Book Bundle", 1999),
    ("Mitgliedschaft Basis", 2900),
    ("Workshop-Aufzeichnung", 9900),
    ("Jahresprogramm Plus", 238800),
    ("Vorlagen-Paket", 3900),
)
SEPA_CODES = ("MD06", "AM04", "MS02", "AC04", "MD01", "SL01")
CARD_CODES = ("10.4", "13.1", "13.3", "4837", "4853", "4808")
PAYPAL_CODES = ("PP-UNAUTH", "PP-NOT-RECEIVED")

# Behaviours of buyers, with weights.
BEHAVIOURS = (
    ("on_time", 58),
    ("late", 14),
    ("partial", 8),
    ("never", 10),
    ("chargeback", 6),
    ("refund", 3),
    ("cancelled", 1),
)
_BEHAVIOUR_NAMES = tuple(b for b, _ in BEHAVIOURS)
_BEHAVIOUR_CUM = []
_acc = 0
for _, _w in BEHAVIOURS:
    _acc += _w
    _BEHAVIOUR_CUM.append(_acc)
METHODS = (("credit_card", 30), ("sepa", 25), ("paypal", 20), ("sofort", 10), ("invoice", 15))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def merchant_ids(merchants: int) -> list[str]:
    return [f"m{i:05d}" for i in range(1, merchants + 1)]


def merchant_name(rng: random.Random) -> str:
    a, b, c = (rng.choice(words) for words in MERCHANT_WORDS)
    return f"{a}{b.lower() if a.endswith('s') else '-' + b} {c}"


def _buyer(rng: random.Random, serial: int) -> dict[str, Any]:
    country = _pick(rng, (("DE", 75), ("AT", 15), ("CH", 10)))
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    zip_code, city = rng.choice(CITIES[country])
    street = rng.choice(STREETS)
    house: str | None = str(rng.randint(1, 180)) + ("" if rng.random() < 0.9 else "a")
    flaw = rng.random()
    if flaw < 0.03:
        house = None  # missing house number
    elif flaw < 0.045:
        zip_code = None  # missing postal code
    elif flaw < 0.06:
        # a postal code that does not fit the country
        zip_code = zip_code[:-1] if country == "DE" else zip_code + "0"
    ascii_name = (
        f"{first}.{last}".lower()
        .replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("ß", "ss")
        .replace("é", "e")
        .replace("è", "e")
        .replace("ç", "c")
        .replace("ë", "e")
    )
    company = f"{last} GmbH" if rng.random() < 0.05 else None
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{ascii_name}.{serial}@example.org",
        "company_name": company,
        "street": street,
        "house_number": house,
        "zip_code": zip_code,
        "city": city,
        "country_code": country,
        "phone": f"+49 151 {rng.randint(1000000, 9999999)}" if rng.random() < 0.3 else None,
        "locale": "en" if rng.random() < 0.1 else "de",
        "type": "business" if company else "consumer",
    }


def _schedule(
    rng: random.Random, plan: str, price: int, ordered: datetime, as_of: datetime
) -> list[tuple[int, date, int]]:
    """(number, due date, cents) of the installments known at as_of."""
    start = ordered.date() + timedelta(days=rng.choice((0, 0, 7, 14)))
    if plan == "one_time_payment":
        return [(1, start, price)]
    if plan == "breakdown_payment":
        count = rng.choice((3, 3, 6, 6, 12))
        part = price // count
        amounts = [part] * (count - 1) + [price - part * (count - 1)]
        return [(i + 1, start + timedelta(days=30 * i), amounts[i]) for i in range(count)]
    # a subscription: one entry per billed period up to as_of
    out = []
    due = start
    number = 1
    while due <= as_of.date() and number <= 12:
        out.append((number, due, price))
        number += 1
        due = due + timedelta(days=30)
    return out or [(1, start, price)]


def _order(rng: random.Random, i: int, mids: list[str], names: dict[str, str], as_of: datetime):
    mid = mids[min(len(mids) - 1, int(len(mids) * rng.random() ** 2))]  # a few big merchants
    ordered = as_of - timedelta(seconds=rng.randint(3600, HISTORY_DAYS * 86400))
    product, base_price = rng.choice(PRODUCTS)
    plan = _pick(rng, (("one_time_payment", 50), ("breakdown_payment", 35), ("abonnement", 15)))
    buyer = _buyer(rng, i)
    currency = "CHF" if buyer["country_code"] == "CH" and rng.random() < 0.7 else "EUR"
    draw = rng.random() * _acc
    behaviour = _BEHAVIOUR_NAMES[next(k for k, c in enumerate(_BEHAVIOUR_CUM) if draw < c)]
    method = _pick(rng, METHODS)
    if behaviour == "chargeback" and method not in ("sepa", "credit_card", "paypal"):
        method = rng.choice(("sepa", "credit_card"))
    price = base_price if plan != "abonnement" else max(990, base_price // 10)
    schedule = _schedule(rng, plan, price, ordered, as_of)
    total = price if plan != "abonnement" else price * len(schedule)
    oid = f"o{i:08d}"
    txs: list[dict[str, Any]] = []
    latest = ordered
    due_now = [s for s in schedule if s[1] <= as_of.date()]
    status = "active"

    def sale(number: int, cents: int, when: datetime) -> dict[str, Any]:
        nonlocal latest
        latest = max(latest, when)
        tx = {
            "transaction_id": f"{oid}-s{len(txs) + 1}",
            "type": "sale",
            "amount": _money(cents),
            "processed_at": _ts(when),
            "installment_number": number,
            "reverses_transaction_id": None,
            "fee": None,
            "reason_code": None,
        }
        txs.append(tx)
        return tx

    def at(day: date, lag_days: int) -> datetime | None:
        moment = datetime(day.year, day.month, day.day, 9, tzinfo=UTC) + timedelta(
            days=lag_days, seconds=rng.randint(0, 30000)
        )
        moment = max(moment, ordered + timedelta(seconds=60))
        return moment if moment < as_of else None

    if behaviour in ("on_time", "chargeback", "refund"):
        for number, due, cents in due_now:
            when = at(due, rng.randint(-2, 1))
            if when is not None:
                sale(number, cents, when)
    elif behaviour == "late":
        for number, due, cents in due_now:
            when = at(due, rng.randint(12, 45))
            if when is not None:
                sale(number, cents, when)
    elif behaviour == "partial":
        stop = rng.randint(0, max(0, len(due_now) - 1))
        for number, due, cents in due_now[:stop]:
            when = at(due, rng.randint(0, 3))
            if when is not None:
                sale(number, cents, when)
        if len(due_now) > stop:
            number, due, cents = due_now[stop]
            when = at(due, rng.randint(0, 20))
            if when is not None:
                sale(number, max(1, cents * rng.choice((25, 50, 75)) // 100), when)
    elif behaviour == "cancelled":
        status = "cancelled"
    sales = [t for t in txs if t["type"] == "sale"]
    if behaviour == "chargeback" and sales:
        target = rng.choice(sales)
        when = datetime.fromisoformat(target["processed_at"]) + timedelta(
            days=rng.randint(3, 40), seconds=rng.randint(0, 3600)
        )
        if when < as_of:
            codes = {"sepa": SEPA_CODES, "credit_card": CARD_CODES}.get(method, PAYPAL_CODES)
            latest = max(latest, when)
            txs.append(
                {
                    "transaction_id": f"{oid}-c1",
                    "type": "chargeback",
                    "amount": target["amount"],
                    "processed_at": _ts(when),
                    "installment_number": target["installment_number"],
                    "reverses_transaction_id": target["transaction_id"],
                    "fee": rng.choice(("3.00", "3.50", "7.50", "12.50", "15.00")),
                    "reason_code": rng.choice(codes),
                }
            )
    if behaviour == "refund" and sales:
        when = datetime.fromisoformat(sales[-1]["processed_at"]) + timedelta(
            days=rng.randint(1, 14)
        )
        if when < as_of:
            latest = max(latest, when)
            for k, target in enumerate(sales, start=1):
                txs.append(
                    {
                        "transaction_id": f"{oid}-r{k}",
                        "type": "refund",
                        "amount": target["amount"],
                        "processed_at": _ts(when),
                        "installment_number": target["installment_number"],
                        "reverses_transaction_id": target["transaction_id"],
                        "fee": None,
                        "reason_code": None,
                    }
                )
            status = "refunded"
    if status == "active" and plan != "abonnement":
        paid = {t["installment_number"] for t in txs if t["type"] == "sale"}
        full = {t["installment_number"]: t["amount"] for t in txs if t["type"] == "sale"}
        if (
            len(paid) == len(schedule)
            and all(full[n] == _money(c) for n, _, c in schedule)
            and not any(t["type"] == "chargeback" for t in txs)
        ):
            status = "completed"
    updated = min(as_of - timedelta(seconds=1), latest + timedelta(seconds=rng.randint(1, 600)))
    return {
        "order_id": oid,
        "merchant_id": mid,
        "merchant_name": names[mid],
        "order_date": _ts(ordered),
        "updated_at": _ts(updated),
        "status": status,
        "currency": currency,
        "total_amount": _money(total),
        "product": {"id": f"p{PRODUCTS.index((product, base_price)) + 1}", "name": product},
        "payment_plan": plan,
        "payment_method": method,
        "buyer": buyer,
        "installments": [
            {"number": n, "due_date": d.isoformat(), "amount": _money(c)} for n, d, c in schedule
        ],
        "transactions": txs,
    }


def generate_orders(
    n: int, merchants: int = 50, seed: int = 1, as_of: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """`n` order records of `merchants` merchants, as of `as_of` (default 2026-11-26 06:00 UTC)."""
    if n < 0 or merchants < 1:
        raise ValueError("need n >= 0 orders and at least 1 merchant")
    as_of = (as_of or datetime(2026, 11, 26, 6, tzinfo=UTC)).astimezone(UTC)
    mids = merchant_ids(merchants)
    name_rng = random.Random(f"{seed}-merchants")
    names = {mid: merchant_name(name_rng) for mid in mids}
    rng = random.Random(seed)
    for i in range(1, n + 1):
        yield _order(rng, i, mids, names, as_of)


def mutate_orders(
    records: Iterable[dict[str, Any]], fraction: float, seed: int, as_of: datetime
) -> Iterator[dict[str, Any]]:
    """The changed snapshots of about `fraction` of `records`, stamped just before `as_of`.

    Only changed records are yielded (the delta a source would deliver). Changes: a payment
    of the earliest unpaid installment; a new billed period of a subscription that is
    already overdue (or, for other plans, a chargeback); a chargeback of a sale.
    """
    import copy

    rng = random.Random(f"mutate-{seed}")
    as_of = as_of.astimezone(UTC)
    for r in records:
        if rng.random() >= fraction:
            continue
        rec = copy.deepcopy(r)
        old = datetime.fromisoformat(rec["updated_at"].replace("Z", "+00:00"))
        when = max(old + timedelta(seconds=1), as_of - timedelta(seconds=rng.randint(60, 7200)))
        if when >= as_of:
            when = old + timedelta(microseconds=1)
        kind = rng.choice(("payment", "overdue", "chargeback"))
        txs = rec["transactions"]
        sales = [t for t in txs if t["type"] == "sale"]
        reversed_ids = {t["reverses_transaction_id"] for t in txs if t["type"] != "sale"}
        paid = {t["installment_number"] for t in sales}
        unpaid = [i for i in rec["installments"] if i["number"] not in paid]
        if kind == "overdue" and rec["payment_plan"] == "abonnement":
            last = rec["installments"][-1]
            due = date.fromisoformat(last["due_date"]) + timedelta(days=30)
            due = min(due, (when - timedelta(days=11)).date())
            due = max(due, date.fromisoformat(last["due_date"]) + timedelta(days=1))
            rec["installments"].append(
                {
                    "number": last["number"] + 1,
                    "due_date": due.isoformat(),
                    "amount": last["amount"],
                }
            )
            rec["total_amount"] = _money(
                sum(int(i["amount"].replace(".", "")) for i in rec["installments"])
            )
            rec["status"] = "active"
        elif kind == "payment" and unpaid:
            inst = unpaid[0]
            txs.append(
                {
                    "transaction_id": f"{rec['order_id']}-m{len(txs) + 1}",
                    "type": "sale",
                    "amount": inst["amount"],
                    "processed_at": _ts(when),
                    "installment_number": inst["number"],
                    "reverses_transaction_id": None,
                    "fee": None,
                    "reason_code": None,
                }
            )
        else:
            open_sales = [t for t in sales if t["transaction_id"] not in reversed_ids]
            if not open_sales:
                continue
            target = open_sales[-1]
            codes = SEPA_CODES if rec["payment_method"] == "sepa" else CARD_CODES
            txs.append(
                {
                    "transaction_id": f"{rec['order_id']}-m{len(txs) + 1}",
                    "type": "chargeback",
                    "amount": target["amount"],
                    "processed_at": _ts(when),
                    "installment_number": target["installment_number"],
                    "reverses_transaction_id": target["transaction_id"],
                    "fee": "7.50",
                    "reason_code": rng.choice(codes),
                }
            )
            if rec["status"] == "completed":
                rec["status"] = "active"
        rec["updated_at"] = _ts(when)
        yield rec


def write_jsonl(records: Iterable[dict[str, Any]], path: Path | str) -> int:
    """Write records as JSON Lines (gzip when the name ends in .gz); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    opener = gzip.open if path.suffix == ".gz" else open
    tmp = path.with_name(path.name + ".part")
    with opener(tmp, "wb") as out:  # type: ignore[operator]
        buf: list[bytes] = []
        for rec in records:
            buf.append(orjson.dumps(rec))
            count += 1
            if len(buf) >= 2000:
                out.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            out.write(b"\n".join(buf) + b"\n")
    tmp.replace(path)
    return count
