"""The database layer: engines and migrations (`engine`), every difference between SQLite
and PostgreSQL (`dialect`), column types (`types`), which merchants and how many rows one
statement takes (`scope`)."""

from dunning.db.dialect import (
    ANALYZE_MIN_ROWS,
    insert_for,
    is_postgres,
    prefer_index_lookups,
    refresh_statistics,
    upsert,
)
from dunning.db.engine import (
    HEAD_REVISION,
    DatabaseConfigError,
    alembic_config,
    dispose_engine,
    ensure_schema,
    get_engine,
    head_revision,
    normalise_url,
    safe_url,
    session_scope,
    upgrade,
)
from dunning.db.scope import CHUNK, Scope, chunks

__all__ = [
    "ANALYZE_MIN_ROWS",
    "CHUNK",
    "HEAD_REVISION",
    "DatabaseConfigError",
    "Scope",
    "alembic_config",
    "chunks",
    "dispose_engine",
    "ensure_schema",
    "get_engine",
    "head_revision",
    "insert_for",
    "is_postgres",
    "normalise_url",
    "prefer_index_lookups",
    "refresh_statistics",
    "safe_url",
    "session_scope",
    "upgrade",
    "upsert",
]
