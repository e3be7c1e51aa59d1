"""The installation id and creating the schema on a real PostgreSQL (the server of test_ledger_postgres)."""
from __future__ import annotations

import threading

import pytest
from sqlmodel import SQLModel
from test_ledger import seed
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)

from digestbot.errors import StoreError
from digestbot.store import Store

pytest.importorskip("psycopg")


@pytest.fixture
def fresh(pg_url):  # noqa: F811
    store = Store(pg_url)
    SQLModel.metadata.drop_all(store.engine)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    yield store
    store.close()


def table_names(store: Store) -> set[str]:
    with store.engine.connect() as conn:
        return {n for (n,) in conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_an_older_postgresql_database_gets_one_installation_id_even_from_two_openers_at_once(fresh, pg_url):  # noqa: F811
    fresh.create_tables()
    ids = seed(fresh, 3)
    with fresh.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE installation")  # as an older digestbot made it
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    found: list[str] = []

    def opener() -> None:
        with Store.open_existing(pg_url) as store:
            found.append(store.installation)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 4 and len(set(found)) == 1
    with fresh.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM installation").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM digest").scalar() == len(ids)


def test_creating_the_schema_on_postgresql_is_all_or_nothing(fresh):
    with fresh.engine.begin() as conn:  # a name one of the later indexes needs is taken
        conn.exec_driver_sql("CREATE TABLE ix_digest_active (x int)")
    with pytest.raises(StoreError):
        fresh.create_tables()
    assert table_names(fresh) == {"ix_digest_active"}
    with fresh.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ix_digest_active")
    fresh.create_tables()
    assert {"paper", "delivery", "digest", "installation"} <= table_names(fresh)
    assert fresh.installation == Store(fresh.url).installation
