"""Upkeep of an open database, for store.py: the columns a newer digestbot added to its tables, and
SQLite's write-ahead log.

Like store.py, this is a module that imports SQLAlchemy; nothing outside the store modules does.
"""
from __future__ import annotations

import logging

from sqlalchemy import Column, Engine, inspect
from sqlalchemy.exc import DatabaseError
from sqlmodel import SQLModel

log = logging.getLogger(__name__)


def add_missing_columns(engine: Engine) -> None:
    """A database made by an older digestbot gets today's new columns (nullable ones, such as
    digest.claimed_by: older rows have no value)."""
    for table in SQLModel.metadata.sorted_tables:
        existing = _columns(engine, table.name)
        for column in table.columns:
            if column.name not in existing:
                _add_column(engine, table.name, column)


def _add_column(engine: Engine, table: str, column: Column) -> None:
    sql = f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type.compile(dialect=engine.dialect)}"
    try:
        with engine.connect() as conn:
            conn.info["write"] = True  # BEGIN IMMEDIATE on SQLite (store.py)
            try:
                with conn.begin():
                    conn.exec_driver_sql(sql)
            finally:
                conn.info.pop("write", None)  # the pool hands this connection out again
    except DatabaseError:
        if column.name not in _columns(engine, table):  # two processes opening it at once: both tried
            raise


def _columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def checkpoint_wal(engine: Engine, busy_timeout: float) -> None:
    """Copy SQLite's write-ahead log into the database and truncate it. A process that never closes
    its last connection (the daemon) otherwise keeps a -wal file as large as its largest burst, and
    a reader that never lets a checkpoint finish makes it grow until the disk is full. Skipped,
    without waiting, while another process writes or reads an older snapshot."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()  # outside a transaction, as it must be
            try:
                cursor.execute("PRAGMA busy_timeout=0")  # never delay the end of a send pass for it
                busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
                cursor.close()
    except (DatabaseError, engine.dialect.dbapi.Error) as exc:
        busy = exc
    if busy:
        log.debug("write-ahead log not checkpointed (%s): another process is using the database", busy)
