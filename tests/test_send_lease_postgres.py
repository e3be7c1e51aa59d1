"""The claim token and its renewal on a real PostgreSQL (see test_ledger_postgres.py for the server;
skipped without it): the fenced writes and the added column are plain SQL on both databases."""
from __future__ import annotations

from datetime import timedelta

import pytest
from test_ledger import NOW, seed

from digestbot.store import Store
from digestbot.store.ledger import Ledger

pytest.importorskip("psycopg")

from test_ledger_postgres import pg_url, store  # noqa: E402,F401  (the fixtures)


def test_a_take_over_renewal_and_fenced_records_on_postgresql(store):  # noqa: F811
    first, second = seed(store, 2)
    slow = Ledger(store, lease=timedelta(minutes=1), clock=lambda: NOW)
    assert len(slow.claim_batch(NOW)) == 2
    later = NOW + timedelta(minutes=2)
    quick = Ledger(store, lease=timedelta(minutes=1), clock=lambda: later)
    [taken] = quick.claim_batch(later, limit=1)  # the first: the slow sender keeps only the second
    slow.clock = lambda: later  # its next `hold` renews, and finds the first gone
    assert not slow.hold(first) and slow.hold(second)
    quick.sent(taken.id, "<quick@x>", later)
    slow.sent(first, "<slow@x>", NOW)
    slow.sent(second, "<slow-2@x>", NOW)
    rows = {row.id: row.message_id for row in quick.digests("sent")}
    assert rows == {first: "<quick@x>", second: "<slow-2@x>"} and slow.lost == {first}


def test_an_older_database_on_postgresql_gets_the_claim_column(store, pg_url):  # noqa: F811
    [digest_id] = seed(store, 1)
    with store.engine.begin() as conn:  # as an older digestbot made it
        conn.exec_driver_sql("ALTER TABLE digest DROP COLUMN claimed_by")
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    reopened = Store.open_existing(pg_url)
    ledger = Ledger(reopened, clock=lambda: NOW)
    assert [r.id for r in ledger.claim_batch(NOW)] == [digest_id]
    ledger.sent(digest_id, "<m@x>", NOW)
    assert ledger.get(digest_id).status == "sent" and ledger.lost == set()
    reopened.close()
