"""Upkeep of an open database, for database.py and schema.py: bringing its schema to this version's (the
Alembic revisions in migrations/), and SQLite's write-ahead log.

A database made before migrations has no alembic_version table: its tables tell which revision it is
(`recognise`), it is stamped so, then upgraded. An upgrade runs in one write transaction, BEGIN
IMMEDIATE on SQLite and under an advisory lock on PostgreSQL, and looks again once it holds the lock:
of two processes opening an old database at once, one upgrades and the other finds it done. On SQLite a
copy is made first with VACUUM INTO (the -wal file's content travels with it), 0600 beside the file;
VACUUM cannot run inside the write transaction, so the copy is taken just before it: a write another
process commits between the two is in the upgraded database only (the copy is for a failed upgrade).
An opener that finds the work done once it holds the lock removes its copy.

Like the other modules of digestbot.store, this one imports SQLAlchemy; nothing outside the package does.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DatabaseError

from ..errors import StoreError
from .migrations import HEAD, REVISIONS

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
LOCK_KEY = 0x6469676573  # "diges": the advisory lock that serialises schema changes on PostgreSQL
VERSION_TABLE = "alembic_version"
# Release 1694ff9 (revision 0001) also brought the indexes of versions before it up to date on every
# open; adopting such a database does that once: SQL of that release, valid on SQLite and PostgreSQL.
RELEASE_INDEXES = ("CREATE INDEX IF NOT EXISTS ix_digest_active ON digest (id) WHERE status IN ('pending', 'sending')",
                   "CREATE INDEX IF NOT EXISTS ix_delivery_waiting ON delivery (subscription, channel, target) "
                   "WHERE digest_id IS NULL",
                   "DROP INDEX IF EXISTS ix_digest_status", "DROP INDEX IF EXISTS ix_delivery_status")


@dataclass(frozen=True)
class Revision:
    """Where a database's schema is: `recorded` in alembic_version (None: made before migrations) and
    the revision its tables are (`recorded`, or recognised from the tables)."""
    recorded: str | None
    tables: str

    @property
    def newest(self) -> bool:
        return self.recorded == HEAD

    @property
    def pending(self) -> list[str]:
        """The revisions an upgrade would apply, oldest first."""
        known = list(REVISIONS)
        return known[known.index(self.tables) + 1:] if self.tables in REVISIONS else []


@dataclass(frozen=True)
class Upgraded:
    before: Revision
    backup: Path | None  # the copy made first (SQLite only)


def revision(engine: Engine) -> Revision:
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> Revision:
    tables = set(inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        recorded = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        if recorded is not None:
            return Revision(recorded, recorded)
    return Revision(None, recognise(conn, tables))


def recognise(conn: Connection, tables: set[str]) -> str:
    """The revision of a database made before migrations: release 1694ff9 made 0001, without
    digest.claimed_by and the installation table; a development version since made one or both."""
    columns = {c["name"] for c in inspect(conn).get_columns("digest")}
    return "0002" if "claimed_by" in columns and "installation" in tables else "0001"


def check_known(found: Revision, where: str) -> None:
    if found.tables not in REVISIONS:
        raise StoreError(f"{where} has schema revision {found.tables}, which this digestbot does not know (the "
                         f"newest it knows is {HEAD}): a newer digestbot made or upgraded it. Run that version, "
                         f"or restore the copy made before its upgrade (a file named like the database, "
                         f"with .before-REVISION-TIME)")


def upgrade(engine: Engine, where: str, sqlite_file: Path | None, busy_timeout: float) -> Upgraded | None:
    """Bring the database to HEAD; None when it is there already (one row read: every open does this)."""
    found = revision(engine)
    check_known(found, where)
    if found.newest:
        return None
    backup = back_up(sqlite_file, found.tables, busy_timeout) if sqlite_file and found.pending else None
    try:
        done = _upgrade_locked(engine, where)
    except DatabaseError:
        if backup is not None:
            log.error("the schema upgrade of %s failed and was rolled back; a copy from before it is %s",
                      where, backup)
        raise
    if done is None and backup is not None:  # another process upgraded it meanwhile
        backup.unlink(missing_ok=True)
        return None
    if done is not None:
        log.warning("upgraded the schema of %s from revision %s to %s%s", where, done.tables, HEAD,
                    f"; a copy from before is {backup}" if backup else "")
    return None if done is None else Upgraded(done, backup)


def _upgrade_locked(engine: Engine, where: str) -> Revision | None:
    with engine.connect() as conn:
        conn.info["write"] = True  # BEGIN IMMEDIATE on SQLite (database.py): one process upgrades at a time
        try:
            with conn.begin():
                lock(conn)
                found = _revision(conn)  # again, now that no other process can change it
                check_known(found, where)
                if found.newest:
                    return None
                config = alembic_config(conn)
                from alembic import command

                if found.recorded is None:
                    for sql in RELEASE_INDEXES:
                        conn.exec_driver_sql(sql)
                    command.stamp(config, found.tables)
                if found.pending:
                    command.upgrade(config, "head")
                return found
        finally:
            conn.info.pop("write", None)  # the pool hands this connection out again


def lock(conn: Connection) -> None:
    """On PostgreSQL, wait for any other process changing the schema (until this transaction ends);
    on SQLite BEGIN IMMEDIATE did it."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")


def stamp_head(conn: Connection) -> None:
    """Record a database just made from tables.py as being at the newest revision."""
    from alembic import command

    command.stamp(alembic_config(conn), "head")


def alembic_config(conn: Connection | None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "digestbot.store:migrations")
    config.attributes["connection"] = conn  # env.py runs in this connection's open transaction
    return config


def back_up(path: Path, revision: str, busy_timeout: float) -> Path:
    """A copy of the SQLite database at `path`, beside it, private like it (0600)."""
    copy = path.with_name(f"{path.name}.before-{revision}-{datetime.now(UTC):%Y%m%d%H%M%S}")
    made = None
    try:
        made = copy = _new_private_file(copy)
        conn = sqlite3.connect(path, timeout=busy_timeout)
        try:
            conn.execute("VACUUM INTO ?", (str(copy),))
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        if made is not None:
            made.unlink(missing_ok=True)
        raise StoreError(f"cannot copy {path} to {copy} before upgrading its schema ({exc}), so it was not "
                         f"upgraded: the copy needs about as much free space as the database and a folder this "
                         f"user may write to") from None
    return copy


def _new_private_file(path: Path) -> Path:
    """An empty 0600 file at `path`, or at PATH-2, PATH-3 ... when another opener's copy took the name."""
    for attempt in range(1, 100):
        candidate = path if attempt == 1 else path.with_name(f"{path.name}-{attempt}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path} and 98 more names like it exist")


def checkpoint_wal(engine: Engine, busy_timeout: float) -> None:
    """Copy SQLite's write-ahead log into the database and truncate it. A process that never closes
    its last connection (the daemon) otherwise keeps a -wal file as large as its largest burst, and
    a reader that never lets a checkpoint finish makes it grow until the disk is full. Skipped,
    without waiting, while another process writes or reads an older snapshot."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as conn:
            driver = conn.connection.dbapi_connection
            assert driver is not None  # an open connection holds its driver's connection
            cursor = driver.cursor()  # outside a transaction, as it must be
            try:
                cursor.execute("PRAGMA busy_timeout=0")  # never delay the end of a send pass for it
                busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
                cursor.close()
    except (DatabaseError, engine.dialect.loaded_dbapi.Error) as exc:
        busy = exc
    if busy:
        log.debug("write-ahead log not checkpointed (%s): another process is using the database", busy)
