"""The poll leader lock (store/leader.py) on SQLite: an exclusive flock on `<database>.leader`, held by one
process at a time, freed however its holder ends; in-memory SQLite always leads. PostgreSQL's advisory
lock is tested in test_leader_postgres.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digestbot.errors import StoreError
from digestbot.store import Leader, Store

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
HOLD = textwrap.dedent("""
    import sys
    from digestbot.store import Store
    store = Store(sys.argv[1])
    leader = store.leadership()
    leader.role = "daemon"
    print("held" if leader.try_acquire() else "refused", flush=True)
    sys.stdin.readline()  # hold until told
""")


def holder_process(url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_on_sqlite_one_process_holds_the_lock_and_another_takes_it_when_the_first_ends(tmp_path):
    url = f"sqlite:///{tmp_path / 'digestbot.db'}"
    other = holder_process(url)
    try:
        leader = Store(url).leadership()
        assert not leader.try_acquire() and not leader.held
        holder = leader.holder()
        assert holder is not None and (holder.pid, holder.role) == (other.pid, "daemon")
        assert "another digestbot process (digestbot daemon, pid" in _refusal(leader)
        other.kill()  # not even a clean exit: the kernel frees the lock with the process
        other.wait(10)
        assert leader.acquire(timeout=10) and leader.held
        assert leader.holder() is not None and leader.holder() == leader.me()
    finally:
        if other.poll() is None:
            other.kill()
    leader.release()
    assert not leader.held and Leader(url).holder() is None  # released: nobody holds it, whatever the file says
    assert (tmp_path / "digestbot.db.leader").exists()


def test_on_sqlite_two_leaders_of_one_process_exclude_each_other_and_release_frees_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'digestbot.db'}"
    first, second = Leader(url), Leader(url)
    assert first.try_acquire() and first.try_acquire()  # taking it again while held: still held
    assert not second.try_acquire() and not second.acquire(timeout=0.6)
    first.release()
    assert second.try_acquire()
    with pytest.raises(StoreError, match="holds the poll leader lock"), first.holding():
        pass
    second.close()
    with first.holding():
        assert first.held
    assert not first.held


def test_in_memory_sqlite_always_leads():
    leader = Leader("sqlite:///:memory:")
    assert leader.try_acquire() and leader.check() and Leader("sqlite:///:memory:").try_acquire()


def _refusal(leader: Leader) -> str:
    try:
        with leader.holding():
            pass
    except StoreError as exc:
        return str(exc)
    raise AssertionError("the lock was free")


def test_a_busy_sqlite_database_names_the_process_that_polls_or_says_plainly_another_one_writes(tmp_path):
    from delivery_world import hold_write_lock

    path = tmp_path / "digestbot.db"
    url = f"sqlite:///{path}"
    Store(url).create_tables()
    store = Store(url, busy_timeout=0.2)
    releasing = hold_write_lock(path, 1.0)
    with pytest.raises(StoreError) as nobody:
        store.beat("here", 1, NOW, NOW)
    releasing.join()
    assert "another digestbot process (sending or polling), or another program using the database," in str(nobody.value)
    other = holder_process(url)
    try:
        releasing = hold_write_lock(path, 1.0)
        with pytest.raises(StoreError) as polling:
            store.beat("here", 1, NOW, NOW)
        releasing.join()
    finally:
        other.kill()
        other.wait(10)
    assert f"database busy: another digestbot process (digestbot daemon, pid {other.pid} on " in str(polling.value)
    assert "restore" not in str(polling.value) and "backup" not in str(polling.value)
