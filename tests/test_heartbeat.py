"""The daemon's heartbeat (daemon.Pulse) on a real SQLite database: a write that finds the database busy
is logged and skipped, never raised into the daemon; the next beat writes again; a stop removes the row."""
from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace

from delivery_world import hold_write_lock

from digestbot import daemon
from digestbot.store import Store


def test_a_heartbeat_that_finds_the_database_busy_is_logged_and_the_next_one_writes(tmp_path, caplog):
    db = tmp_path / "bot.db"
    store = Store(f"sqlite:///{db}", busy_timeout=0.2)
    store.create_tables()
    live = SimpleNamespace(ctx=SimpleNamespace(store=store))  # what Pulse reads of a daemon.Live
    pulse = daemon.Pulse(live)  # type: ignore[arg-type]
    pulse.beat()
    [first] = store.heartbeats()
    assert (first.host, first.pid, first.started_at) == (pulse.host, pulse.pid, pulse.started_at)

    holder = hold_write_lock(db, 1.0)
    with caplog.at_level(logging.WARNING, logger="digestbot.daemon"):
        pulse.beat()  # raises nothing
    assert "heartbeat not written" in caplog.text and "busy" in caplog.text
    assert store.heartbeats() == [first]
    holder.join()

    pulse.beat()
    [second] = store.heartbeats()
    assert second.beat_at > first.beat_at and second.started_at == first.started_at

    pulse.stop()
    assert store.heartbeats() == []
    pulse.beat()  # a beat already queued in a job thread when the daemon stopped writes nothing
    assert store.heartbeats() == []


def test_heartbeats_are_one_row_per_daemon_newest_first(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bot.db'}")
    store.create_tables()
    start = daemon.now()
    store.beat("host-a", 10, start, start)
    store.beat("host-b", 10, start, start + timedelta(seconds=5))
    store.beat("host-a", 10, start, start + timedelta(seconds=9))
    assert [(b.host, b.pid, b.beat_at) for b in store.heartbeats()] == [
        ("host-a", 10, start + timedelta(seconds=9)), ("host-b", 10, start + timedelta(seconds=5))]
    assert store.forget_heartbeat("host-a", 10) and not store.forget_heartbeat("host-a", 10)
    assert [b.host for b in store.heartbeats()] == ["host-b"]
