"""Making the schema whole in one step, and the installation id (used by database.py).

A process killed while creating a SQLite database used to leave a file with no tables, which every later
command refused as "not a digestbot database" (a service restarted on failure looped for ever). So a new
database is built in a temporary file beside it (0600: it will hold subscriber addresses), closed, and
only then linked into place: the database's name never shows a half-made file. A killed creation leaves
at most a `NAME.creating-PID-RANDOM` file, removed by the next creation or open.

Files that older versions left half-made are recognised by `is_blank` (a SQLite file that never held
anything); opening.open_store completes them unless the marker says the database was created and used.

On PostgreSQL DDL is transactional: `complete` runs inside one transaction, under an advisory lock so
that two processes completing the same database queue instead of colliding. A new database is made from
tables.py and stamped with the newest Alembic revision (migrations/): it needs no upgrade.
"""
from __future__ import annotations

import glob
import logging
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

from sqlalchemy import Connection, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from ..errors import StoreError
from .tables import InstallationRow
from .upkeep import lock, stamp_head

INSTALLATION = SQLModel.metadata.tables[InstallationRow.__tablename__]

log = logging.getLogger(__name__)
CREATING = ".creating-"


def complete(conn: Connection) -> None:
    """A new database: today's tables, recorded as the newest revision, and the installation row, in the
    caller's transaction (on SQLite a BEGIN IMMEDIATE one, so that two processes take turns). An existing
    database only gets its installation row if it lacks one; its schema is upgraded on open
    (upkeep.upgrade)."""
    lock(conn)
    tables = set(inspect(conn).get_table_names())
    if "paper" not in tables:
        SQLModel.metadata.create_all(conn, checkfirst=True)
        stamp_head(conn)
        tables.add(INSTALLATION.name)
    if INSTALLATION.name not in tables:
        return
    row = {"slot": 1, "id": uuid4().hex[:12], "created": datetime.now(UTC)}
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(conn.dialect.name)
    if dialect is not None:
        conn.execute(dialect.insert(INSTALLATION).values(**row).on_conflict_do_nothing(index_elements=["slot"]))
    elif installation_id(conn) is None:
        conn.execute(INSTALLATION.insert().values(**row))


def installation_id(conn: Connection) -> str | None:
    """The installation id, or None when the database predates it (no table or no row yet)."""
    if INSTALLATION.name not in inspect(conn).get_table_names():
        return None
    return conn.execute(select(INSTALLATION.c.id).where(INSTALLATION.c.slot == 1)).scalar()


def create_file(path: Path, build_in: Callable[[Path], None]) -> None:
    """A new SQLite database at `path`, built by `build_in(temporary)` and closed before it gets its name."""
    try:
        temporary = temporary_beside(path)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc}: check that its folder exists and this user "
                         f"may write there") from None
    try:
        build_in(temporary)
        if not move_into_place(temporary, path):
            log.info("another process created %s meanwhile: using that one", path)
    except OSError as exc:
        raise StoreError(f"cannot create the database {path}: {exc}") from None
    finally:
        for built in _with_journals(temporary):
            built.unlink(missing_ok=True)


def temporary_beside(path: Path) -> Path:
    """A new, empty 0600 file next to `path` for building the database in (leftovers of killed runs go)."""
    remove_leftovers(path)
    temporary = path.with_name(f"{path.name}{CREATING}{os.getpid()}-{uuid4().hex[:8]}")  # threads too
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return temporary


def move_into_place(temporary: Path, path: Path) -> bool:
    """Give the finished file its name, unless another process did so first (then False: use theirs).

    A hard link never replaces an existing file, so two first runs at once cannot swap a database in
    use for another; os.replace stands in on file systems without hard links."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    except OSError:
        if path.exists():
            return False
        os.replace(temporary, path)
    _sync_folder(path.parent)
    return True


def is_blank(path: Path) -> bool:
    """A SQLite file that never held anything: 0 bytes, or a header and no schema (what an older version
    killed while creating the database left). Damaged, foreign or busy files are not blank."""
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True)  # never creates a file
        try:
            tables: int = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            return tables == 0
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def remove_leftovers(path: Path) -> None:
    """Delete the temporary files of creations killed before they finished (their process is gone)."""
    for leftover in path.parent.glob(f"{glob.escape(path.name)}{CREATING}*"):
        pid = leftover.name[len(path.name) + len(CREATING):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            log.info("removing %s, left by a creation of the database that was stopped", leftover)
            leftover.unlink(missing_ok=True)


def _with_journals(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # os.kill(pid, 0) would end the process there: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _sync_folder(folder: Path) -> None:
    """Make the new name survive a power cut (the file's content was synced when SQLite closed it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
