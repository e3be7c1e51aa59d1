"""Alembic's environment: runs on the connection (and inside the transaction) upkeep.py hands it,
or on `sqlalchemy.url` when a developer drafts a revision (see __init__.py)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

from digestbot.store import tables  # noqa: F401  (registers the tables in SQLModel.metadata)


def run(connection: Connection) -> None:
    # SQLite alters most things only by copying the table: batch mode does that for us.
    context.configure(connection=connection, target_metadata=SQLModel.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():  # nothing when the caller's transaction is open (it commits)
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("no database: digestbot runs its migrations itself (`digestbot db upgrade`); to draft a "
                         "revision set sqlalchemy.url (see digestbot/store/migrations/__init__.py)")
    with create_engine(url).connect() as connection:
        run(connection)
