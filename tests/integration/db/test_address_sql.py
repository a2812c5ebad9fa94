"""The SQL fast path of the address rule never passes an address the Python rule refuses,
and passes the ordinary complete ones (else the fast path would be dead weight)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from dunning.db import get_engine
from dunning.models.address import REQUIRED_FIELDS, certainly_complete_sql, check_address
from tests.factories import address

pytestmark = pytest.mark.postgres

ORDINARY = [
    address(),
    address(country_code="AT", zip_code="1010", city="Wien"),
    address(country_code="CH", zip_code="8001", city="Zürich"),
    address(country_code="FR", zip_code="75001", city="Paris"),
    address(country_code="GB", zip_code="SW1A 1AA", city="London"),
    address(first_name="Jörg", last_name="Öztürk", street="Straße des 17. Juni", house_number="1a"),
]

DOUBTFUL = [
    *(address(**{field: None}) for field in REQUIRED_FIELDS),
    *(address(**{field: ""}) for field in REQUIRED_FIELDS),
    *(address(**{field: "   "}) for field in REQUIRED_FIELDS),
    *(address(**{field: "\t\n"}) for field in REQUIRED_FIELDS),
    *(address(**{field: "\u00a0\u2003"}) for field in REQUIRED_FIELDS),  # Unicode spaces
    address(first_name="\u3000"),  # ideographic space
    address(zip_code="1234"),  # DE needs 5
    address(zip_code="123456"),
    address(zip_code=" 12345"),
    address(zip_code="12345 "),
    address(zip_code="1234a"),
    address(zip_code="١٢٣٤٥"),  # Arabic-Indic digits: Python's \d takes them, SQL doubts
    address(zip_code="12345\n"),
    address(country_code="AT", zip_code="12345"),
    address(country_code="CH", zip_code="123"),
    address(country_code="XX"),
    address(country_code="ZZ"),
    address(country_code="de"),
    address(country_code="D"),
    address(country_code=" DE"),
    address(country_code="FR", zip_code=" "),
    address(street="-"),  # not blank, but no letter or digit: SQL doubts, Python decides
]


def _sql_verdicts(url: str, buyers: list[dict]) -> list[bool]:
    columns = ", ".join(f"{f} text" for f in REQUIRED_FIELDS)
    with get_engine(url).begin() as conn:
        conn.execute(text(f"CREATE TEMP TABLE b (i int, {columns}) ON COMMIT DROP"))
        conn.execute(
            text(
                f"INSERT INTO b (i, {', '.join(REQUIRED_FIELDS)}) VALUES "
                f"(:i, {', '.join(':' + f for f in REQUIRED_FIELDS)})"
            ),
            [
                {"i": i, **{f: buyer.get(f) for f in REQUIRED_FIELDS}}
                for i, buyer in enumerate(buyers)
            ],
        )
        sure = {
            i for (i,) in conn.execute(text(f"SELECT i FROM b WHERE {certainly_complete_sql('b')}"))
        }
    return [i in sure for i in range(len(buyers))]


def test_sql_passes_only_what_check_address_passes(postgres_url):
    buyers = ORDINARY + DOUBTFUL
    for buyer, sure in zip(buyers, _sql_verdicts(postgres_url, buyers), strict=True):
        if sure:
            assert check_address(buyer).complete, buyer


def test_sql_passes_the_ordinary_complete_addresses(postgres_url):
    assert all(check_address(b).complete for b in ORDINARY)
    assert _sql_verdicts(postgres_url, ORDINARY) == [True] * len(ORDINARY)
    # and doubts every incomplete one of the corpus
    incomplete = [b for b in DOUBTFUL if not check_address(b).complete]
    assert len(incomplete) > 40
    assert not any(_sql_verdicts(postgres_url, incomplete))
