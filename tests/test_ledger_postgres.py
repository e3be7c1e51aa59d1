"""The claim path on a real PostgreSQL (Debian's packages), started here on loopback in a temp dir.

Skipped when the server binaries or psycopg are missing (`.ci/run` installs both). PostgreSQL is where
`FOR UPDATE SKIP LOCKED` does the work that BEGIN IMMEDIATE does on SQLite.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import test_ledger
from servers import free_port
from test_ledger import NOW, seed

from digestbot.store import DigestStatus, Store
from digestbot.store.ledger import Ledger

pytest.importorskip("psycopg")


def _binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def pg_url():
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries are not installed")
    folder = Path(tempfile.mkdtemp(prefix="digestbot-pg-"))  # not pytest's tmp: the server user must reach it
    data, port = folder / "data", free_port()
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
                    f"-h 127.0.0.1 -p {port} -k {folder} -F", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def store(pg_url):
    store = Store(pg_url)
    from sqlmodel import SQLModel

    SQLModel.metadata.drop_all(store.engine)
    store.create_tables()
    yield store
    store.close()


def test_concurrent_senders_on_postgresql_claim_each_digest_once(store, pg_url):
    ids = seed(store, 60)
    claimed: list[int] = []
    lock = threading.Lock()

    def sender() -> None:
        ledger = Ledger(Store(pg_url))
        while batch := ledger.claim_batch(NOW, limit=7):
            with lock:
                claimed.extend(row.id for row in batch)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)


def test_lease_sent_and_failed_on_postgresql(store):
    first, second = seed(store, 2)
    assert [d.status for d in store.digests()] == [DigestStatus.PENDING] * 2
    ledger = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW)  # a lease runs from the claim
    assert [r.id for r in ledger.claim_batch(NOW)] == [first, second]
    assert ledger.claim_batch(NOW + timedelta(minutes=5)) == []
    ledger.sent(first, "<digest-1@x>", NOW)
    assert ledger.claim_batch(NOW + timedelta(minutes=11)) == []  # never its own claim again, even expired
    ledger.close()  # gives `second` back: due at once
    other = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW)
    [again] = other.claim_batch(NOW + timedelta(minutes=11))
    assert again.id == second
    assert other.failed(again, "550 no such user", NOW, permanent=True) is None
    other.close()
    counts = ledger.counts()["email"]
    assert (counts.sent, counts.failed, counts.pending) == (1, 1, 0)
    with store.engine.connect() as conn:  # a status enum is stored as its value (psycopg dumps an Enum's name)
        assert sorted(conn.exec_driver_sql("SELECT status FROM digest").scalars()) == ["failed", "sent"]
        assert sorted(conn.exec_driver_sql("SELECT status FROM delivery").scalars()) == ["failed", "sent"]


def test_an_older_database_on_postgresql_gets_todays_indexes(store, pg_url):
    seed(store, 2)
    with store.engine.begin() as conn:  # as an older digestbot made it
        conn.exec_driver_sql("DROP INDEX ix_digest_active")
        conn.exec_driver_sql("CREATE INDEX ix_digest_status ON digest (status)")
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    reopened = Store.open_existing(pg_url)
    with reopened.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE tablename = 'digest'")
        names = {name for (name,) in rows}
    assert "ix_digest_active" in names and "ix_digest_status" not in names
    assert len(Ledger(reopened).claim_batch(NOW)) == 2
    reopened.close()


def test_heartbeats_on_postgresql_one_row_per_daemon(store):
    """The heartbeat upsert (daemon.Pulse) in PostgreSQL's dialect: a later beat replaces the row."""
    store.beat("host-a", 7, NOW, NOW)
    store.beat("host-b", 7, NOW, NOW + timedelta(seconds=1))
    store.beat("host-a", 7, NOW, NOW + timedelta(seconds=30))
    assert [(b.host, b.pid, b.beat_at) for b in store.heartbeats()] == [
        ("host-a", 7, NOW + timedelta(seconds=30)), ("host-b", 7, NOW + timedelta(seconds=1))]
    assert store.forget_heartbeat("host-a", 7)
    assert [b.host for b in store.heartbeats()] == ["host-b"]


def test_open_many_on_postgresql_opens_as_on_sqlite(store, pg_url):
    """PostgreSQL's own INSERT of new digests (their columns as arrays, unnested: writer.open_many): the
    same digests, sizes and empty ones as SQLite's, and a period already open is not opened again."""
    test_ledger.test_open_many_opens_every_subscriptions_digests_set_based_as_open_digests_does(pg_url)
