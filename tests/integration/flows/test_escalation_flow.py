"""The Prefect flow `escalate_cases` with the embedded defaults: .eml files in a folder."""

from __future__ import annotations

from datetime import date, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

from dunning.config import get_settings
from tests.escalation_fixtures import at, case, make_case, one_time

D0 = date(2026, 1, 16)


def test_flow_writes_eml_files_once(migrated_db, partner, prefect_harness, tmp_path, monkeypatch):
    from dunning.flows.escalate import escalate_cases

    mail = tmp_path / "mail"
    monkeypatch.setenv("DUNNING_SMTP_URL", f"file:{mail}")
    monkeypatch.setenv("DUNNING_PARTNER_URL", partner.url)
    monkeypatch.setenv("DUNNING_DATABASE_URL", migrated_db)
    get_settings.cache_clear()
    en = one_time("o-en", buyer={**one_time("x")["buyer"], "locale": "en-GB"})
    ids = [make_case(migrated_db, one_time("o-de")), make_case(migrated_db, en)]
    as_of = at(D0 + timedelta(days=10))
    stats = escalate_cases(as_of=as_of)
    assert stats["performed"] == {"reminder_1:done": 2}
    stats = escalate_cases(as_of=as_of)
    assert stats["claimed"] == 0
    files = sorted(p.name for p in mail.glob("*.eml"))
    assert files == [f"case-{i}-reminder_1.eml" for i in sorted(ids)]
    de = message_from_bytes((mail / files[0]).read_bytes(), policy=default_policy)
    en_msg = message_from_bytes((mail / files[1]).read_bytes(), policy=default_policy)
    assert de["Message-ID"] == f"<case-{ids[0]}-reminder_1@example.com>"
    assert de["Subject"].startswith("1. Mahnung") and en_msg["Subject"].startswith("First reminder")
    html = de.get_body(("html",)).get_content()
    assert "Online-Kurs Python" in html and "99,00 EUR" in html
    assert {case(migrated_db, i).state for i in ids} == {"reminder_1"}
