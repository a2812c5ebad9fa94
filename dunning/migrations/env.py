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
    return not (type_ == "table" and reflected and compare_to is None and name.startswith("v_"))


with get_engine(url).connect() as connection:
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
