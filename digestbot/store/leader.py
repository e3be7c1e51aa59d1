"""The poll leader: one process at a time polls the sources and opens digests; every process sends.

Several `digestbot run` processes (on one machine or several) may share a database. Sending is safe
from all of them (the ledger's claims), but polling twice records nothing new and two processes that
poll at the same moment race to insert the same papers, and opening digests twice at once does work
twice. So a process polls and opens only while it holds this lock:

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a connection of its own,
  kept open while held (not one of the pool's: those come and go with transactions). The lock goes with
  the session: a process that is killed loses it at once (the server sees the socket close); one whose
  machine vanishes loses it when TCP keepalives find the peer gone (set on both sides: about 25 s). If
  the connection breaks on our side, leadership is lost: `check()` notices, logs it and returns False.
- SQLite: an exclusive `flock` on the file `<database>.leader` beside the database (SQLite is one
  machine; the lock goes with the process, however it ends). In-memory SQLite: always the leader.

The holder writes who it is (role, pid, host): in PostgreSQL's `application_name` of the lock's
session, in the lock file on SQLite, so that a process that waits can say for whom (`holder()`).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from ..errors import StoreError

log = logging.getLogger(__name__)

# A fixed 64-bit key, the same in every digestbot: advisory locks are per database, so one key is enough.
KEY = int.from_bytes(hashlib.sha256(b"digestbot poll leader").digest()[:8], "big", signed=True)
WAIT_STEP = 0.5  # seconds between two attempts of `acquire`
# The lock's session on PostgreSQL: keepalives on our side (a vanished server is noticed) and, through
# `options`, on the server's (a vanished leader's lock is freed within idle + interval × count = 25 s).
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
SERVER_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
USER_TIMEOUT_MS = 30_000  # unacknowledged data for this long: the connection is dead (libpq >= 12)
_NAME = re.compile(r"^digestbot (?P<role>.*?) pid (?P<pid>\d+) on (?P<host>.*)$")


@dataclass(frozen=True)
class LeaderInfo:
    """Who holds the lock, as it wrote itself down."""
    role: str  # "daemon", "run --once", "send" (a send pass of a program that does not coordinate)
    pid: int
    host: str

    def __str__(self) -> str:
        return f"digestbot {self.role}, pid {self.pid} on {self.host}"


class Leader:
    """The poll leader lock of one database. Thread-safe; `held` reads no database (`check()` does).

    `role` says what this process is when it holds the lock (shown to others by `holder()`). `managed`:
    the process decides itself when it leads (the daemon, run --once): pipeline.send_due then never takes
    the lock for a pass (see there)."""

    def __init__(self, url: str, *, role: str = "send"):
        self.url, self.role, self.managed = url, role, False
        self.host, self.pid = socket.gethostname(), os.getpid()
        self._lock = threading.RLock()
        self._held = False
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._file: IO[str] | None = None
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        self._sqlite = dialect == "sqlite"
        self._postgres = dialect.startswith("postgres")
        path = _sqlite_file(url) if self._sqlite else None
        self.lock_path = Path(f"{path}.leader") if path else None

    @property
    def held(self) -> bool:
        return self._held

    def me(self) -> LeaderInfo:
        return LeaderInfo(self.role, self.pid, self.host)

    def try_acquire(self) -> bool:
        """Take the lock if it is free (True; also when this process holds it already)."""
        with self._lock:
            if self._held:
                return True
            if self._postgres:
                self._held = self._try_postgres()
            elif self.lock_path is not None:
                self._held = self._try_file(self.lock_path)
            else:  # in-memory SQLite (one process by definition), or a database with nothing to share
                self._held = True
            return self._held

    def acquire(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the lock; whether it was taken."""
        deadline = time.monotonic() + timeout
        while not self.try_acquire():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(WAIT_STEP, left))
        return True

    @contextmanager
    def holding(self, timeout: float = 0.0) -> Iterator[None]:
        """Hold the lock for a block (waiting up to `timeout` seconds for it): StoreError when another
        process keeps it. Given back after, unless it was held before."""
        already = self._held
        if not self.acquire(timeout):
            holder = self.holder()
            raise StoreError(f"another digestbot process{f' ({holder})' if holder else ''} holds the poll leader "
                             f"lock: it polls and opens the digests")
        try:
            yield
        finally:
            if not already:
                self.release()

    def release(self) -> None:
        """Give the lock up (nothing when not held)."""
        with self._lock:
            if not self._held:
                return
            self._held = False
            if self._conn is not None:
                try:
                    self._conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": KEY})
                except SQLAlchemyError as exc:  # the session is gone: so is its lock
                    log.debug("poll leader lock: unlock failed (%s); closing its connection", exc)
                    self._drop_connection()
            if self._file is not None:
                self._file.truncate(0)
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
                self._file = None

    def check(self) -> bool:
        """Whether this process still holds the lock, asking the database (PostgreSQL: its session is
        alive). A lock found lost is logged, and `held` is False from then on."""
        with self._lock:
            if not self._held or self._conn is None:
                return self._held
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError as exc:
                self._held = False
                self._drop_connection()
                log.error("lost the poll leader lock: its database connection broke (%s); this process no longer "
                          "polls or opens digests (another process may take over) and keeps sending",
                          _first_line(exc))
                return False

    def holder(self) -> LeaderInfo | None:
        """Who holds the lock, when someone does and said who (None: free, or unknown)."""
        if self._held:
            return self.me()
        try:
            if self._postgres:
                return self._postgres_holder()
            if self.lock_path is not None:
                return self._file_holder(self.lock_path)
        except (OSError, SQLAlchemyError) as exc:
            log.debug("poll leader lock: could not read who holds it: %s", exc)
        return None

    def close(self) -> None:
        with self._lock:
            self.release()
            self._drop_connection()

    # --- PostgreSQL ---------------------------------------------------------------------------------

    def _connection(self) -> Connection:
        if self._conn is None:
            if self._engine is None:
                self._engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                             connect_args=_session_args(self.url))
            self._conn = self._engine.connect()
        return self._conn

    def _try_postgres(self) -> bool:
        try:
            conn = self._connection()
            taken = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": KEY}).scalar())
            if taken:  # who holds it, for holder() in the others (pg_stat_activity)
                conn.execute(text("SELECT set_config('application_name', :name, false)"),
                             {"name": _name(self.me())})
            return taken
        except SQLAlchemyError as exc:
            log.warning("poll leader lock: cannot reach the database (%s)", _first_line(exc))
            self._drop_connection()
            return False

    def _postgres_holder(self) -> LeaderInfo | None:
        unsigned = KEY & 0xFFFF_FFFF_FFFF_FFFF  # a bigint key is stored as two oids: high and low halves
        with self._connection_for_reading() as conn:
            name = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :high AND l.objid = :low "
                "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF}).scalar()
        return _parse(name) if isinstance(name, str) else None

    def _connection_for_reading(self) -> Connection:
        if self._engine is None:
            self._engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                         connect_args=_session_args(self.url))
        return self._engine.connect()

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                pass
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # --- SQLite ----------------------------------------------------------------------------------------

    def _try_file(self, path: Path) -> bool:
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(_name(self.me()) + "\n")
        handle.flush()
        self._file = handle
        return True

    @staticmethod
    def _file_holder(path: Path) -> LeaderInfo | None:
        if not path.exists():
            return None
        with path.open("r", encoding="utf-8") as handle:
            try:  # a shared lock we can take: nobody holds it (what the file says is a past holder's)
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return None
            except BlockingIOError:
                return _parse(handle.read().strip())


def _name(info: LeaderInfo) -> str:
    return f"digestbot {info.role} pid {info.pid} on {info.host}"[:63]  # PostgreSQL keeps 63 bytes of it


def _parse(name: str) -> LeaderInfo | None:
    found = _NAME.match(name)
    return LeaderInfo(found["role"], int(found["pid"]), found["host"]) if found else None


def _session_args(url: str) -> dict[str, object]:
    args: dict[str, object] = {**KEEPALIVES, "options": SERVER_KEEPALIVES, "connect_timeout": 10}
    if "+psycopg" in url.split(":", 1)[0] and "+psycopg2" not in url.split(":", 1)[0]:
        import psycopg

        if psycopg.pq.version() >= 120000:
            args["tcp_user_timeout"] = USER_TIMEOUT_MS
    return args


def _sqlite_file(url: str) -> str | None:
    prefix = "sqlite:///"
    rest = url[len(prefix):] if url.startswith(prefix) else ""
    return rest.split("?", 1)[0] if rest and not rest.startswith(":memory:") else None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
