"""DUNNING_WEB_URL: the links the CSV export and the needs-human artifact give open the same
filtered view, CSV and case page in the web area."""

from __future__ import annotations

import re

import pytest

from dunning.models.board import BoardFilter
from dunning.models.weblinks import board_csv_url, board_url, case_url
from dunning.tasks.report import query_board

BASE = "https://inkasso.example.com/"
ROW = re.compile(r'<tr data-case="(\d+)">')


def _local(url: str) -> str:
    assert url.startswith(BASE.rstrip("/") + "/")
    return url.removeprefix(BASE.rstrip("/"))


def test_board_links_carry_every_filter():
    f = BoardFilter.parse(
        status="in_progress",
        opened_from="2026-01-01",
        opened_to="2026-01-31",
        min_amount="1,50",
        max_amount="99",
        search="Jürgen & Co",
        merchant_id="m 1",
    )
    assert board_url(BASE, f) == (
        "https://inkasso.example.com/cases?merchant=m+1&status=in_progress&from=2026-01-01"
        "&to=2026-01-31&min_amount=1.50&max_amount=99&search=J%C3%BCrgen+%26+Co"
    )
    assert board_url(BASE, BoardFilter()) == "https://inkasso.example.com/cases"
    assert board_csv_url(BASE, BoardFilter(), "rfc4180").endswith("/cases.csv?dialect=rfc4180")
    assert case_url(BASE, 7, "m1") == "https://inkasso.example.com/cases/7?merchant=m1"


@pytest.mark.parametrize(
    "f",
    [
        BoardFilter(status="in_progress"),
        BoardFilter(search="MÜLLER"),
        BoardFilter(merchant_id="m2", min_amount=1),
        BoardFilter(status="blocked", merchant_id="m2"),
    ],
    ids=["in-progress", "search", "merchant-amount", "blocked"],
)
def test_a_link_opens_the_same_cases_as_the_filter(site, client_for, f):
    client = client_for(site.alice)
    rows, _ = query_board(site.url, f)
    expected = [r["case_id"] for r in rows]
    page = client.get(_local(board_url(BASE, f)))
    assert page.status_code == 200
    assert [int(c) for c in ROW.findall(page.text)] == expected
    exported = client.get(_local(board_csv_url(BASE, f, "rfc4180"))).text.splitlines()
    assert [int(line.split(",")[0]) for line in exported[1:]] == expected


def test_needs_human_rows_link_to_their_case_pages(site, client_for):
    from dunning.flows.artifacts import needs_human_description, needs_human_rows

    rows, total = needs_human_rows(site.url, web_url=BASE.rstrip("/"))
    assert total and rows
    client = client_for(site.alice)
    merchants = _merchant_of_cases(site.url)
    for row in rows:
        row["merchant_id"] = merchants[row["case_id"]]  # in the link, not a column (width)
        assert row["link"] == case_url(BASE, row["case_id"], row["merchant_id"])
        page = client.get(_local(row["link"]))
        assert page.status_code == 200 and f"{row['order_id']}" in page.text
    assert "link" not in needs_human_rows(site.url)[0][0]  # without DUNNING_WEB_URL
    text = needs_human_description("3", BASE.rstrip("/"))
    assert "/cases?status=awaiting_approval" in text and "/cases?status=blocked" in text
    # a merchant's login opens its own case from the link, another merchant's is 404
    own = next(r for r in rows if r["merchant_id"] == "m2")
    assert client_for(site.m2).get(_local(own["link"])).status_code == 200
    assert client_for(site.m1).get(_local(own["link"])).status_code == 404


def _merchant_of_cases(url: str) -> dict[int, str]:
    from sqlalchemy import select

    from dunning.db import session_scope
    from dunning.models.schema import Case

    with session_scope(url) as s:
        return dict(s.execute(select(Case.case_id, Case.merchant_id)).all())
