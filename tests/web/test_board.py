"""The board's sorting (`sort=`, `-` for descending) and its pages: keyset for the opened_at
orders (next, previous, first), OFFSET (`page=`) for the other columns."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import CaseReport

ROW = re.compile(r'<tr data-case="(\d+)">')
LINK = re.compile(r'id="(first-page|prev-page|next-page)"[^>]*href="([^"]*)"')


def _cases(text: str) -> list[int]:
    return [int(c) for c in ROW.findall(text)]


def _links(text: str) -> dict[str, str]:
    return {name: html.unescape(href) for name, href in LINK.findall(text)}


def _expected(url: str, *order) -> list[int]:
    with session_scope(url) as s:
        return list(s.scalars(select(CaseReport.case_id).order_by(*order)))


def test_sorting_by_a_column_in_both_directions_pages_by_offset(site, client_for):
    client = client_for(site.alice)
    r = CaseReport
    up = _expected(site.url, r.outstanding_amount.asc(), r.case_id.asc())
    down = _expected(site.url, r.outstanding_amount.desc(), r.case_id.desc())
    assert _cases(client.get("/cases?sort=outstanding_amount").text) == up
    assert _cases(client.get("/cases?sort=-outstanding_amount").text) == down
    # the CSV of a sorted view comes in the same order
    exported = client.get("/cases.csv?sort=-outstanding_amount&dialect=rfc4180").text
    assert [int(line.split(",")[0]) for line in exported.splitlines()[1:]] == down
    # the header link of the sorted column turns its direction; the others sort ascending
    text = client.get("/cases?sort=outstanding_amount&status=in_progress").text
    assert "sort=-outstanding_amount" in text and "sort=overdue_days" in text
    assert 'aria-sort="ascending"' in text and "status=in_progress" in text

    seen, url = [], "/cases?sort=-outstanding_amount&limit=2"
    for _ in range(10):
        text = client.get(url).text
        seen += _cases(text)
        links = _links(text)
        if "next-page" not in links:
            break
        assert "page=" in links["next-page"] and "sort=-outstanding_amount" in links["next-page"]
        url = links["next-page"] + "&limit=2"
    assert seen == down
    back = _links(text)
    assert "prev-page" in back and "first-page" in back
    assert len(down) == 6  # three pages of two: the one before the last is the second
    assert _cases(client.get(back["prev-page"] + "&limit=2").text) == down[2:4]
    first = client.get(back["first-page"] + "&limit=2").text
    assert _cases(first) == down[:2] and "prev-page" not in _links(first)


def test_keyset_pages_forward_and_back_in_opened_order(site, client_for):
    client = client_for(site.alice)
    r = CaseReport
    for sort, order in (
        ("", (r.opened_at.desc(), r.case_id.desc())),
        ("opened_at", (r.opened_at.asc(), r.case_id.asc())),
    ):
        expected = _expected(site.url, *order)
        pages, url = [], f"/cases?sort={sort}&limit=2"
        while True:
            text = client.get(url).text
            pages.append(_cases(text))
            links = _links(text)
            if "next-page" not in links:
                break
            assert "after=" in links["next-page"]
            url = links["next-page"] + "&limit=2"
        assert [c for p in pages for c in p] == expected
        # and back again, page by page, to the first (which has no previous)
        for number in range(len(pages) - 1, 0, -1):
            assert "before=" in links["prev-page"]
            text = client.get(links["prev-page"] + "&limit=2").text
            assert _cases(text) == pages[number - 1]
            links = _links(text)
        assert "prev-page" not in links and "next-page" in links


def test_an_unknown_sort_is_the_default(site, client_for):
    client = client_for(site.alice)
    default = _cases(client.get("/cases").text)
    assert _cases(client.get("/cases?sort=drop+table").text) == default
    assert _cases(client.get("/cases?sort=--state").text) == default


def test_german_by_default_english_by_accept_language_or_switch_kept_in_a_cookie(site, client_for):
    client = client_for(site.m1)
    board = client.get("/cases").text
    assert '<html lang="de">' in board and "CSV herunterladen" in board
    assert "Download CSV" not in board
    english = client.get("/cases", headers={"accept-language": "en-GB,en;q=0.9,de;q=0.5"}).text
    assert '<html lang="en">' in english and "Download CSV" in english
    assert "Outstanding" in english and "In progress" in english
    assert "Deutsch" in english  # the switch back
    preferred = client.get("/cases", headers={"accept-language": "fr, de;q=0.8, en;q=0.3"})
    assert '<html lang="de">' in preferred.text

    switched = client.get("/cases?lang=en&status=in_progress")
    assert "Download CSV" in switched.text and switched.cookies.get("dunning_lang") == "en"
    # the cookie keeps English on the next pages, whatever the browser says
    settings = client.get("/", headers={"accept-language": "de"}).text
    assert '<html lang="en">' in settings and "Settings of your collection" in settings
    link = re.search(r'id="lang-switch" href="([^"]*)"', client.get("/cases?search=x").text)
    assert link and html.unescape(link.group(1)) == "/cases?search=x&lang=de"
    back = client.get("/cases?lang=de").text
    assert "CSV herunterladen" in back and client.cookies.get("dunning_lang") == "de"
