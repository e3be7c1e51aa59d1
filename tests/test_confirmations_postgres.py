"""Subscribe requests on a real PostgreSQL (the server of test_ledger_postgres): requests for one address
made at the same moment count each other there too (an advisory lock on the address), so one is recorded."""
from __future__ import annotations

import pytest

pytest.importorskip("psycopg")

from test_confirmations_store import ALICE, NOW, assert_one_of_concurrent_requests  # noqa: E402
from test_ledger_postgres import pg_url, store  # noqa: E402,F401  (the fixtures)

from digestbot.store import Store  # noqa: E402


def test_concurrent_identical_requests_on_postgresql_record_one(store, pg_url):  # noqa: F811
    assert_one_of_concurrent_requests(store, lambda: Store(pg_url))


def test_the_per_address_limit_on_postgresql(store):  # noqa: F811
    assert all(store.request_confirmation(sub, "", ALICE, NOW, 3) for sub in ("a", "b", "c"))
    assert store.request_confirmation("d", "", ALICE, NOW, 3) is None
