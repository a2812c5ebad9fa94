"""Engines, sessions and schema upgrades."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from dunning.db.dialect import register_sqlite_functions

MIGRATIONS = Path(__file__).parent.parent / "migrations"


class DatabaseConfigError(ValueError):
    """A database URL the user gave that cannot work; the message says why in one line."""


def normalise_url(url: str) -> str:
    """Validate a SQLAlchemy URL and prefer psycopg 3 for plain `postgresql://` URLs."""
    try:
        parsed = make_url(url)
    except ValueError:  # a port 'notaport'. The URL is not quoted: it may hold a password.
        raise DatabaseConfigError(
            "DUNNING_DATABASE_URL has a port that is not a number; "
            "use postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None
    except ArgumentError:
        raise DatabaseConfigError(
            f"DUNNING_DATABASE_URL is not a database URL: {url!r}; "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseConfigError(
            f"DUNNING_DATABASE_URL names {backend!r}; supported are sqlite and postgresql"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<invalid URL>"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    """One pooled engine per URL for the life of the process."""
    url = normalise_url(url)
    if url not in _ENGINES:
        _ENGINES[url] = _create_engine(url)
    return _ENGINES[url]


def dispose_engine(url: str) -> None:
    engine = _ENGINES.pop(normalise_url(url), None)
    if engine is not None:
        engine.dispose()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            event.listen(engine, "connect", register_sqlite_functions)
        else:
            engine = create_engine(
                url,
                pool_size=5,
                # 15 in all: escalation holds one per SMTP batch (4) and per partner call (8)
                # while the case row is locked (issue 9).
                max_overflow=10,
                pool_pre_ping=True,
                # Bound every statement so a stuck query cannot hold a worker forever.
                connect_args={"options": "-c statement_timeout=600000", "connect_timeout": 10},
            )
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseConfigError(f"cannot use {safe_url(url)}: {exc}") from None
    return engine


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    factory = sessionmaker(get_engine(url), expire_on_commit=False)
    with factory.begin() as session:
        yield session


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = normalise_url(url)
    return config


def upgrade(url: str) -> tuple[str | None, str | None]:
    """Bring the schema to the newest revision; returns (before, after). Idempotent."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    engine = get_engine(url)
    with engine.connect() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as conn:
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


# The newest migration; a test checks it against alembic's head. Comparing with a constant
# spares every flow run importing alembic (~0.35 s) just to learn that nothing is to do.
HEAD_REVISION = "0016"


def ensure_schema(url: str) -> None:
    """Upgrade only when behind; cheap enough to call at the start of every command."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            current = conn.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:  # no alembic_version table yet: a fresh database
        current = None
    if current != HEAD_REVISION:
        upgrade(url)
