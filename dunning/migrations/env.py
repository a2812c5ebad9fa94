"""Alembic environment: the URL comes from the caller or DUNNING_DATABASE_URL."""

from alembic import context

from dunning.db import get_engine, normalise_url
from dunning.models.schema import Base

config = context.config
url = config.attributes.get("database_url")
if url is None:
    from dunning.config import get_settings

    url = normalise_url(get_settings().database_url)


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    # Objects managed outside the models (views, analyst tables) are not drift.
    if type_ == "table" and reflected and compare_to is None and name.startswith("v_"):
        return False
    # An index of one database only (`Index(...).ddl_if(dialect=...)`, the trigram index of
    # the board search) is not drift on the other.
    ddl_if = getattr(obj, "_ddl_if", None) if type_ == "index" and not reflected else None
    return not (ddl_if is not None and ddl_if.dialect not in (None, dialect))


with get_engine(url).connect() as connection:
    dialect = connection.dialect.name
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
