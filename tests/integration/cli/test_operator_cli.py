"""`dunning case show`, `dunning merchants` and unknown merchants in `dunning settings`, as an
operator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta

import pytest

from dunning.config import Settings
from dunning.db import session_scope
from dunning.models.schema import Action
from dunning.tasks.case_ops import case_action_core
from dunning.tasks.detect import detect_cases_core
from dunning.tasks.handover import apply_handover_core
from tests.factories import load_orders, order_record

DAY = datetime(2026, 1, 20, 12, tzinfo=UTC)


@pytest.fixture
def db(migrated_db):
    load_orders(migrated_db, [order_record("o1"), order_record("o2")])
    detect_cases_core(migrated_db, DAY, Settings())
    apply_handover_core(migrated_db, DAY, Settings())
    result = case_action_core("start", "o1", "looks fine", "cara", DAY, migrated_db)
    with session_scope(migrated_db) as s:
        s.add(
            Action(
                case_id=result["case_id"],
                step="reminder_1",
                idempotency_key=f"case-{result['case_id']}-reminder_1",
                status="done",
                payload={},
                response={"message_id": "<k@shop.example>"},
                attempts=1,
                created_at=DAY + timedelta(days=5),
                done_at=DAY + timedelta(days=5),
            )
        )
    return migrated_db


def run(cli, url, *args):
    return cli(*args, env={"DUNNING_DATABASE_URL": url, "COLUMNS": "200"})


def test_case_show_table_and_json(db, cli):
    table = run(cli, db, "case", "show", "o1")
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert "scheduled (Mahnlauf geplant)" in out
    assert "outstanding_amount" in out and "order_amount" in out
    assert "cara" in out and "start: looks fine" in out  # history: who and why
    assert "reminder_1" in out and "message_id: <k@shop.example>" in out  # action outcome

    doc = run(cli, db, "case", "show", "o1", "--format", "json")
    assert doc.returncode == 0, doc.stderr
    case = json.loads(doc.stdout)
    assert case["order_id"] == "o1" and case["state"] == "scheduled"
    assert case["amounts"]["outstanding_amount"] == "99.00"
    assert [h["to_state"] for h in case["history"]] == ["awaiting_approval", "scheduled"]
    assert case["history"][-1]["actor"] == "cara"
    (action,) = case["actions"]
    assert (action["step"], action["status"]) == ("reminder_1", "done")
    assert action["outcome"] == "message_id: <k@shop.example>"
    # by case id too
    again = run(cli, db, "case", "show", str(case["case_id"]), "--format", "json")
    assert json.loads(again.stdout)["case_id"] == case["case_id"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("case", "show", "nope"), "no case with id or order id 'nope'"),
        (("settings", "show", "nosuch"), "unknown merchant 'nosuch'"),
    ],
)
def test_showing_what_does_not_exist_is_one_line(db, cli, args, words):
    missing = run(cli, db, *args)
    assert missing.returncode == 2
    assert words in missing.stderr
    assert "Traceback" not in missing.stderr and "defaults" not in missing.stdout


def test_merchants_lists_settings_and_open_cases(db, cli):
    from dunning.db import get_engine
    from dunning.models.schema import Case

    with get_engine(db).connect() as conn:
        merchant = conn.execute(Case.__table__.select().limit(1)).first().merchant_id
    stored = run(cli, db, "settings", "set", merchant, "--auto-overdue", "on")
    assert stored.returncode == 0, stored.stderr
    assert "warning" not in stored.stderr  # a merchant with orders: no warning
    ahead = run(cli, db, "settings", "set", "typo-merchant", "--reminder-fee", "2.50")
    assert ahead.returncode == 0, ahead.stderr
    assert "warning" in ahead.stderr and "'typo-merchant' has no orders" in ahead.stderr
    with session_scope(db) as s:  # one default operator everywhere: the login name
        from dunning.tasks.merchant_settings import history

        assert [h.changed_by for h in history(s, "typo-merchant")] == [getpass.getuser()]

    doc = run(cli, db, "merchants", "--format", "json")
    assert doc.returncode == 0, doc.stderr
    rows = {r["merchant_id"]: r for r in json.loads(doc.stdout)}
    assert set(rows) == {merchant, "typo-merchant"}
    assert rows[merchant]["open_cases"] == 2 and rows[merchant]["has_orders"]
    assert rows[merchant]["settings"]["auto_overdue"] is True
    assert rows["typo-merchant"]["open_cases"] == 0
    assert not rows["typo-merchant"]["has_orders"] and rows["typo-merchant"]["configured"]
    assert rows["typo-merchant"]["settings"]["reminder_fee"] == "2.50"

    table = run(cli, db, "merchants")
    assert table.returncode == 0, table.stderr
    assert merchant in table.stdout and "typo-merchant" in table.stdout
    assert "no orders yet" in table.stdout


def test_merchants_on_an_empty_database(migrated_db, cli):
    empty = run(cli, migrated_db, "merchants")
    assert empty.returncode == 0, empty.stderr
    assert "No merchants yet" in empty.stdout
    assert json.loads(run(cli, migrated_db, "merchants", "--format", "json").stdout) == []


def test_the_board_shows_a_hold_when_the_command_returns(db, cli):
    from dunning.tasks.report import refresh_report

    board_time = DAY + timedelta(hours=1)
    refresh_report(db, board_time)
    held = run(cli, db, "case", "hold", "o1", "--reason", "customer disputes")
    assert held.returncode == 0, held.stderr
    rows = json.loads(run(cli, db, "cases", "--format", "json").stdout)
    (row,) = [r for r in rows if r["order_id"] == "o1"]
    assert row["state"] == "on_hold" and row["state_label"] == "Pausiert"
    assert datetime.fromisoformat(row["refreshed_at"]) == board_time
