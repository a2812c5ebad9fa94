"""The merchant's and the operator's way through the web area in a real headless Chromium."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import Case, CaseHistory


def _login(page, base: str, token: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Zugangsschlüssel").fill(token)
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(f"{base}/")


def _board_orders(page) -> list[str]:
    return page.locator("#board tbody tr[data-case] td:nth-child(3)").all_inner_texts()


def test_merchant_filters_downloads_changes_option_and_starts_a_case(page, live_server, site):
    base = live_server
    _login(page, base, site.m1)
    assert page.locator("h1").inner_text() == "Einstellungen in deinem Inkasso"
    assert "Europe/Berlin" in page.content()

    # the board: "In Bearbeitung" and a search with an umlaut, in any case
    page.get_by_role("link", name="Anzeige-Tafel").first.click()
    assert sorted(_board_orders(page)) == ["o1", "o2", "x%_5"]  # m1's own cases only
    page.get_by_label("Status").select_option(label="In Bearbeitung")
    page.get_by_label("Bestell-ID, Vor- oder Nachname").fill("MÜLLER")
    page.get_by_role("button", name="Filtern").click()
    page.wait_for_url("**status=in_progress**")
    assert "search=M%C3%9CLLER" in page.url  # the view can be bookmarked
    assert _board_orders(page) == ["o2"]  # Jürgen Müller; Hans MÜLLER is m3's

    # "CSV herunterladen": the same filters, the CLI's excel-de dialect
    with page.expect_download() as info:
        page.get_by_role("link", name="CSV herunterladen").click()
    data = Path(info.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig")), delimiter=";"))
    assert rows[0][:3] == ["Fall-Nr.", "Händler", "Bestellnummer"]
    assert [(r[2], r[4]) for r in rows[1:]] == [("o2", "Müller")]
    assert rows[1][11] == "55,05"  # decimal comma

    # the option: the first choice counts as a change, so going back meets the 30-day rule
    page.get_by_role("link", name="Einstellungen").click()
    page.get_by_label("Option b: Mahnwesen + Inkasso + Kündigung").check()
    page.get_by_role("button", name="Speichern").click()
    assert page.get_by_role("status").inner_text() == "Gespeichert."
    assert page.locator("#option-lock").is_visible()
    page.get_by_label("Option a: Mahnwesen + Inkasso + gerichtliches Mahnverfahren").check()
    page.get_by_role("button", name="Speichern").click()
    refusal = page.locator("#settings-error").inner_text()
    assert "nur alle 30 Tage" in refusal and "(Europe/Berlin)" in refusal
    assert page.get_by_label("Option b: Mahnwesen + Inkasso + Kündigung").is_checked()

    # start the case awaiting approval (order x%_5), with confirmation
    page.get_by_role("link", name="Anzeige-Tafel").first.click()
    page.get_by_label("Status").select_option(label="Warten auf Freigabe")
    page.get_by_role("button", name="Filtern").click()
    page.locator("#board tbody tr[data-case='5']").get_by_role(
        "link", name="Mahnprozess starten"
    ).click()
    page.wait_for_load_state()  # the confirmation page, not the board while it leaves
    page.get_by_text("Bist du sicher?").wait_for()
    page.get_by_role("button", name="Mahnprozess starten – bestätigen").click()
    assert "Mahnlauf geplant" in page.locator("#result").inner_text()
    assert page.locator("#case-state").inner_text() == "Mahnlauf geplant"
    assert "merchant m1 (web, token" in page.locator("#history-table").inner_text()
    page.goto(f"{base}/cases?status=scheduled")
    assert _board_orders(page) == ["x%_5"]  # the board shows the new state at once


def test_operator_holds_and_resumes_a_case(page, live_server, site):
    base = live_server
    _login(page, base, site.alice)
    assert page.locator("h1").inner_text() == "Händler wählen"
    page.get_by_role("link", name="m1", exact=True).click()
    page.get_by_role("link", name="Anzeige-Tafel").first.click()
    assert "merchant=m1" in page.url
    row = page.locator("#board tbody tr[data-case='1']")
    row.get_by_role("link", name="Pausieren").click()
    page.get_by_label("Grund (wird im Verlauf gespeichert)").fill("Kunde hat angerufen")
    page.get_by_role("button", name="Pausieren – bestätigen").click()
    assert page.locator("#case-state").inner_text() == "Pausiert"
    page.get_by_role("link", name="Fortsetzen").click()
    page.get_by_role("button", name="Fortsetzen – bestätigen").click()
    assert page.locator("#case-state").inner_text() == "1. Mahnung"

    with session_scope(site.url) as s:
        assert s.get(Case, 1).state == "reminder_1"
        actors = s.scalars(select(CaseHistory.actor).where(CaseHistory.case_id == 1)).all()
    assert actors == [f"alice (web, token {site.m1_id + 2})"] * 2


def test_sorting_by_a_header_and_switching_to_english(page, live_server, site):
    base = live_server
    _login(page, base, site.m1)
    page.goto(f"{base}/cases?min_amount=0")
    page.locator("a.sort[data-sort='order_id']").click()
    page.wait_for_url("**sort=order_id**")
    assert "min_amount=0" in page.url  # the filters stay
    ascending = _board_orders(page)
    assert ascending == sorted(ascending) and len(ascending) == 3
    page.locator("a.sort[data-sort='order_id']").click()
    page.wait_for_url("**sort=-order_id**")
    assert _board_orders(page) == list(reversed(ascending))

    page.locator("#lang-switch").click()
    page.wait_for_url("**lang=en**")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.get_by_role("link", name="Download CSV").is_visible()
    assert _board_orders(page) == list(reversed(ascending))  # same view, other language
    page.get_by_role("link", name="Settings").first.click()
    assert page.locator("h1").inner_text() == "Settings of your collection"
