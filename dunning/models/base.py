"""The declarative bases: `Base` for the tables (every change an Alembic revision) and
`ViewBase` for views read through the ORM, kept out of `Base.metadata` so that neither
`create_all` nor `alembic check` takes a view for a missing table."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite's INTEGER PRIMARY KEY is the rowid; BIGINT there would not autoincrement.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JSONDoc = JSON()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ViewBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
