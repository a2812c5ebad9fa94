"""The schema stays distributable on Citus by merchant_id (bench/README.md, "Past one
machine"): every unique key and every foreign key between distributed tables includes
merchant_id, which is NOT NULL. Read from a migrated PostgreSQL database, not the models,
so a migration cannot slip past it."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from dunning.db import get_engine, upgrade
from dunning.models.schema import Base

KEY = "merchant_id"

# Distributed by merchant_id today: the test holds every rule over them.
DISTRIBUTED = {"case_report_daily"}
# Distributed in the design, but their keys lack merchant_id (the children lack the column):
# the follow-up migration of the design. The test says when one becomes distributable.
FOLLOW_UP = {
    "orders",
    "buyers",
    "installments",
    "transactions",
    "cases",
    "case_items",
    "case_charges",
    "case_history",
    "actions",
    "case_report_rows",  # the view case_report reads it
    "case_report_pending",
}
# Replicated to every node: small, joined from every shard by merchant_id.
REFERENCE = {"merchants", "merchant_settings", "merchant_settings_history"}
# On the coordinator only: the runs' bookkeeping, logins, and records without a merchant.
LOCAL = {
    "quarantine",
    "sync_watermarks",
    "sync_stamps",
    "detect_marks",
    "handover_marks",
    "report_marks",
    "last_data_update",
    "web_tokens",
}


def test_every_table_is_classified():
    groups = (DISTRIBUTED, FOLLOW_UP, REFERENCE, LOCAL)
    classified = set().union(*groups)
    assert sum(map(len, groups)) == len(classified), "a table is in two groups"
    assert set(Base.metadata.tables) == classified, (
        "classify new tables for Citus here and in bench/README.md"
    )


def problems(insp, table: str) -> list[str]:
    """What keeps `table` from being distributed by merchant_id, each naming its key."""
    columns = {c["name"]: c for c in insp.get_columns(table)}
    if KEY not in columns:
        return [f"{table}: no {KEY} column"]
    found = [] if not columns[KEY]["nullable"] else [f"{table}.{KEY} is nullable"]
    pk = insp.get_pk_constraint(table)
    keys = [(pk["name"], pk["constrained_columns"])]
    keys += [(u["name"], u["column_names"]) for u in insp.get_unique_constraints(table)]
    keys += [(i["name"], i["column_names"]) for i in insp.get_indexes(table) if i["unique"]]
    found += [f"{table}.{name} {cols} lacks {KEY}" for name, cols in keys if KEY not in cols]
    for fk in insp.get_foreign_keys(table):
        if fk["referred_table"] in REFERENCE:
            continue  # a distributed table may refer to a reference table by any key
        pairs = dict(zip(fk["constrained_columns"], fk["referred_columns"], strict=True))
        if pairs.get(KEY) != KEY:
            found.append(f"{table}.{fk['name']} -> {fk['referred_table']} lacks {KEY}")
    return found


@pytest.mark.postgres
def test_the_migrated_schema_is_distributable_by_merchant_id(postgres_url):
    upgrade(postgres_url)
    insp = inspect(get_engine(postgres_url))
    found = [p for table in sorted(DISTRIBUTED) for p in problems(insp, table)]
    assert found == [], "a distributed table lost merchant_id from a key:\n" + "\n".join(found)
    ready = [t for t in sorted(FOLLOW_UP) if not problems(insp, t)]
    assert ready == [], f"distributable now: move {ready} from FOLLOW_UP to DISTRIBUTED"
    wrong_way = [
        f"{table}.{fk['name']} -> {fk['referred_table']}"
        for table in sorted(REFERENCE | LOCAL)
        for fk in insp.get_foreign_keys(table)
        if fk["referred_table"] in DISTRIBUTED | FOLLOW_UP
    ]
    assert wrong_way == [], "a reference or local table refers to a distributed one"
