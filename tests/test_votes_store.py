"""The store's votes on SQLite and on a real PostgreSQL (the server of test_ledger_postgres): one vote
per (subscription, target, paper), a later one replaces it, undo removes it."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import SQLModel
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)

from digestbot.store import Store, Vote

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        made = Store(f"sqlite:///{tmp_path}/votes.db")
    else:
        pytest.importorskip("psycopg")
        made = Store(request.getfixturevalue("pg_url"))
        SQLModel.metadata.drop_all(made.engine)
    made.create_tables()
    yield made
    made.close()


def test_a_later_vote_replaces_the_earlier_and_undo_removes_it(store):
    store.record_vote("sub", "a@example.org", "2411.00001", "down", T0)
    store.record_vote("sub", "b@example.org", "2411.00001", "up", T0 + timedelta(minutes=1))
    store.record_vote("other", "a@example.org", "2411.00001", "up", T0)
    store.record_vote("sub", "a@example.org", "2411.00001", "up", T0 + timedelta(minutes=2))  # replaces
    assert store.votes("sub") == [
        Vote("sub", "a@example.org", "2411.00001", "up", T0 + timedelta(minutes=2)),  # newest first
        Vote("sub", "b@example.org", "2411.00001", "up", T0 + timedelta(minutes=1))]
    everyone = store.votes_by_subscription()  # what a poll's learning reads, in one query
    assert everyone == {"sub": store.votes("sub"), "other": store.votes("other")}
    assert store.remove_vote("sub", "a@example.org", "2411.00001") is True
    assert store.remove_vote("sub", "a@example.org", "2411.00001") is False
    assert [v.target for v in store.votes("sub")] == ["b@example.org"]
    assert [v.subscription_id for v in store.votes("other")] == ["other"]
    with pytest.raises(ValueError):
        store.record_vote("sub", "a@example.org", "2411.00001", "sideways", T0)
    assert len(store.votes("sub")) == 1
