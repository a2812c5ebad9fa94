"""`dunning purge`: personal data of long-closed cases goes; amounts and states stay."""

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select

from dunning.db import session_scope
from dunning.models.schema import Buyer, Case
from dunning.tasks.purge import ANONYMISED, purge_closed
from tests.factories import load_orders, order_record

AS_OF = datetime(2026, 11, 26, tzinfo=UTC)


def _case(order_id: str, state: str, closed_at: datetime | None) -> Case:
    return Case(
        order_id=order_id,
        merchant_id="m1",
        kind="overdue",
        state=state,
        dunning_option="court",
        currency="EUR",
        opened_at=datetime(2026, 2, 1, tzinfo=UTC),
        default_date=date(2026, 1, 15),
        principal_amount=Decimal("99.00"),
        outstanding_amount=Decimal("0.00"),
        closed_at=closed_at,
        updated_at=AS_OF,
    )


def test_purge_anonymises_only_long_closed_cases(migrated_db, cli):
    load_orders(migrated_db, [order_record(f"o{i}") for i in range(1, 4)])
    with session_scope(migrated_db) as s:
        s.add(_case("o1", "paid", datetime(2026, 3, 1, tzinfo=UTC)))  # long closed
        s.add(_case("o2", "paid", datetime(2026, 11, 1, tzinfo=UTC)))  # closed recently
        s.add(_case("o3", "reminder_1", None))  # open
    result = cli(
        "purge",
        "--closed-before",
        "2026-06-01",
        "--as-of",
        AS_OF.isoformat(),
        env={"DUNNING_DATABASE_URL": migrated_db},
    )
    assert result.returncode == 0, result.stderr
    assert "1 orders" in result.stdout
    with session_scope(migrated_db) as s:
        buyers = {b.order_id: b for b in s.scalars(select(Buyer))}
        case = s.scalars(select(Case).where(Case.order_id == "o1")).one()
    assert buyers["o1"].last_name == ANONYMISED and buyers["o1"].street is None
    assert buyers["o1"].email == "" and buyers["o1"].anonymised_at == AS_OF
    assert buyers["o2"].last_name == "Mustermann" and buyers["o3"].street == "Heidestraße"
    assert case.principal_amount == Decimal("99.00") and case.state == "paid"
    with session_scope(migrated_db) as s:
        assert purge_closed(s, datetime(2026, 6, 1, tzinfo=UTC), AS_OF) == 0


def test_purge_refuses_a_future_cutoff(sqlite_url, cli):
    result = cli("purge", "--closed-before", "2999-01-01", env={"DUNNING_DATABASE_URL": sqlite_url})
    assert result.returncode == 2
    assert "in the future" in result.stderr


def test_a_newer_snapshot_does_not_bring_purged_data_back(migrated_db):
    load_orders(migrated_db, [order_record("o1")])
    with session_scope(migrated_db) as s:
        s.add(_case("o1", "paid", datetime(2026, 3, 1, tzinfo=UTC)))
    with session_scope(migrated_db) as s:
        assert purge_closed(s, datetime(2026, 6, 1, tzinfo=UTC), AS_OF) == 1
    load_orders(migrated_db, [order_record("o1", updated_at="2026-11-27T00:00:00+00:00")])
    with session_scope(migrated_db) as s:
        buyer = s.get(Buyer, "o1")
    assert buyer.last_name == ANONYMISED and buyer.street is None
