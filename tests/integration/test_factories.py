from sqlalchemy import func, select

from dunning.db import session_scope
from dunning.models.schema import Installment, Order
from tests.factories import load_orders, order_record, schedule


def test_load_orders_newest_wins(migrated_db):
    from datetime import date

    old = order_record("o1", updated_at="2026-01-02T00:00:00+00:00")
    new = order_record(
        "o1",
        updated_at="2026-01-03T00:00:00+00:00",
        installments=schedule(3, date(2026, 1, 15), "33.00"),
    )
    load_orders(migrated_db, [new])
    load_orders(migrated_db, [old])
    with session_scope(migrated_db) as s:
        assert s.scalar(select(func.count()).select_from(Installment)) == 3
        assert s.scalar(select(Order.updated_at)).day == 3
