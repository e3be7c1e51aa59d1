"""The poll leader lock (store/leader.py) on a real PostgreSQL (the server of test_ledger_postgres): a session
advisory lock on a connection of its own; a second session cannot take it; it is freed when its session ends,
and a holder whose connection broke knows it has lost it."""
from __future__ import annotations

import logging
import os

import pytest
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)

from digestbot.store import Leader, Store

pytest.importorskip("psycopg")


def test_a_second_session_cannot_take_the_lock_until_the_first_gives_it_up(pg_url):  # noqa: F811
    first, second = Leader(pg_url, role="daemon"), Leader(pg_url)
    try:
        assert first.try_acquire() and first.check()
        assert not second.try_acquire() and not second.acquire(timeout=1.0)
        assert second.holder() == first.me() and first.me().pid == os.getpid() and first.me().role == "daemon"
        first.release()
        assert second.try_acquire() and not first.try_acquire()
        second.close()  # the session ends: its lock with it
        assert first.acquire(timeout=5)
    finally:
        first.close()
        second.close()


def test_a_leader_whose_connection_breaks_loses_the_lead_and_another_takes_it(pg_url, caplog):  # noqa: F811
    store = Store(pg_url)
    leader, other = store.leadership(), Leader(pg_url)
    try:
        assert leader.try_acquire() and not other.try_acquire()
        with store.engine.begin() as conn:  # as when the network or the server drops the session
            conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name LIKE 'digestbot send pid %%' AND pid <> pg_backend_pid()")
        with caplog.at_level(logging.ERROR):
            assert not leader.check()
        assert not leader.held and "lost the poll leader lock" in caplog.text
        assert other.try_acquire()
        assert not leader.try_acquire()  # a new session: the lock is the other's now
    finally:
        leader.close()
        other.close()
        store.close()
