"""Access of the web area: one merchant never reaches another's cases, forms need their CSRF
token, a revoked token logs nobody in, data is shown as text, headers and cookies are strict."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from dunning.db import session_scope
from dunning.models.schema import Case, CaseHistory, MerchantSettings
from tests.factories import address, load_orders, order_record
from tests.report_fixtures import AS_OF, insert_cases
from tests.web.conftest import csrf_of, login

M2_CASES = (3, 4)  # o3 (paid), o4 (blocked) of merchant m2


def _snapshot(url: str) -> tuple:
    with session_scope(url) as s:
        states = tuple(s.scalars(select(Case.state).order_by(Case.case_id)))
        history = s.scalar(select(func.count()).select_from(CaseHistory))
        settings = s.scalar(select(func.count()).select_from(MerchantSettings))
    return states, history, settings


def test_merchant_a_cannot_read_export_or_act_on_merchant_b_cases(site, client_for):
    client = client_for(site.m1)
    csrf = csrf_of(client.get("/").text)
    before = _snapshot(site.url)
    for case_id in M2_CASES:
        assert client.get(f"/cases/{case_id}").status_code == 404
        for action in ("start", "cancel", "hold", "resume"):
            assert client.get(f"/cases/{case_id}/{action}").status_code == 404
            posted = client.post(
                f"/cases/{case_id}/{action}", data={"csrf": csrf, "reason": "mine now"}
            )
            assert posted.status_code == 404
        # by order id, or with the other merchant named in the URL: still nothing
        assert client.get(f"/cases/{case_id}?merchant=m2").status_code == 404
    assert client.get("/cases/o3").status_code == 404
    assert client.get("/cases/999999").status_code == 404
    # a 404 of another's case looks exactly like one of a case that does not exist
    assert client.get("/cases/3").text == client.get("/cases/999999").text

    board = client.get("/cases?merchant=m2").text
    assert "o3" not in board and "O&#39;Brien" not in board and "o1" in board
    assert "o4" not in client.get("/cases?search=brien").text
    exported = client.get("/cases.csv?merchant=m2&dialect=rfc4180").text.splitlines()
    assert {line.split(",")[1] for line in exported[1:]} == {"m1"}
    assert "o4" not in client.get("/cases.csv?search=o4").text
    # a settings post naming m2 changes m1's own settings, never m2's
    client.post("/settings?merchant=m2", data={"csrf": csrf, "dunning_option": "court"})
    with session_scope(site.url) as s:
        assert s.get(MerchantSettings, "m2") is None
    # and by bearer token, as a script would
    bearer = client_for()
    headers = {"authorization": f"Bearer {site.m1}"}
    assert bearer.get("/cases/3", headers=headers).status_code == 404
    assert bearer.post("/cases/4/start", data={"reason": "x"}, headers=headers).status_code == 404
    assert "o3" not in bearer.get("/cases.csv?merchant=m2", headers=headers).text
    assert _snapshot(site.url)[:2] == before[:2]


def test_merchant_may_not_hold_or_resume(site, client_for):
    client = client_for(site.m1)
    csrf = csrf_of(client.get("/").text)
    before = _snapshot(site.url)
    assert client.get("/cases/1/hold").status_code == 403
    assert client.post("/cases/1/hold", data={"csrf": csrf, "reason": "x"}).status_code == 403
    assert client.get("/cases/1/frobnicate").status_code == 404
    assert _snapshot(site.url) == before


def test_every_form_post_needs_its_csrf_token(site, client_for):
    client = client_for(site.m1)
    before = _snapshot(site.url)
    assert client.post("/cases/5/start", data={"reason": "go"}).status_code == 403
    assert client.post("/cases/5/start", data={"reason": "go", "csrf": "0" * 40}).status_code == 403
    assert client.post("/settings", data={"dunning_option": "cancellation"}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    # another session's token is no good either
    other = client_for(site.alice)
    foreign = csrf_of(other.get("/?merchant=m1").text)
    assert client.post("/cases/5/start", data={"reason": "go", "csrf": foreign}).status_code == 403
    assert _snapshot(site.url) == before
    # the login form has its own
    fresh = client_for()
    fresh.get("/login")
    refused = fresh.post("/login", data={"token": site.m1}, follow_redirects=False)
    assert refused.status_code == 403 and "dunning_session" not in fresh.cookies


def test_a_revoked_token_cannot_log_in_and_ends_its_sessions(site, client_for):
    from dunning.web.tokens import revoke_token

    client = client_for(site.m1)
    assert client.get("/cases").status_code == 200
    assert revoke_token(site.url, site.m1_id)
    ended = client.get("/cases", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"].startswith("/login")
    fresh = client_for()
    assert login(fresh, site.m1).status_code == 401
    assert fresh.get("/cases", headers={"authorization": f"Bearer {site.m1}"}).status_code == 401
    assert not revoke_token(site.url, site.m1_id)  # once is enough


def test_a_script_tag_in_a_buyer_name_is_shown_as_text(site, client_for):
    from dunning.tasks.report import refresh_report
    from tests.report_fixtures import _case

    evil = "<script>alert(1)</script>"
    load_orders(site.url, [order_record("o9", "m1", buyer=address(first_name=evil))])
    insert_cases(
        site.url,
        [
            _case(
                case_id=9,
                order_id="o9",
                merchant_id="m1",
                state="awaiting_approval",
                opened_at=AS_OF,
                default_date=date(2026, 1, 15),
                close_reason=evil,
            )
        ],
    )
    refresh_report(site.url, AS_OF)
    client = client_for(site.m1)
    for path in ("/cases", "/cases/9", "/cases/9/cancel", "/cases?search=script"):
        html = client.get(path).text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
        assert evil not in html, path
    assert client.get("/cases.csv?search=script").text.count("<script>") == 1  # CSV is data


def test_headers_cookies_and_login_rate_limit(site, client_for):
    client = client_for()
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    answer = login(client, site.m1)
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/", follow_redirects=False).status_code == 200
    assert client_for().get("/cases", follow_redirects=False).status_code == 303
    assert client_for().get("/cases.csv").status_code == 401

    attacker = client_for()
    codes = [login(attacker, "dwt_wrong").status_code for _ in range(12)]
    assert codes[:9] == [401] * 9 and codes[-1] == 429  # 10 a minute (site's one was the 1st)


@pytest.mark.parametrize("bad", ["from=2026-13-01", "min_amount=abc", "status=nonsense"])
def test_a_bad_filter_is_one_clear_message(site, client_for, bad):
    client = client_for(site.m1)
    answer = client.get(f"/cases?{bad}")
    assert answer.status_code == 400 and 'class="error"' in answer.text
    assert client.get(f"/cases.csv?{bad}").status_code == 400
