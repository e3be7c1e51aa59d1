"""Schema migrations on a real PostgreSQL (the throwaway server of test_ledger_postgres): a database made by
release 1694ff9 with papers, matches, deliveries and digests, upgraded on open (by several openers at
once) and by `digestbot db upgrade`; a failed upgrade rolled back; a new database at the newest revision."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from delivery_world import World, config_text
from sqlmodel import SQLModel
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)
from test_migrations import assert_everything_is_found, assert_schema_is_the_models, release_1694ff9_statements

from digestbot.errors import StoreError
from digestbot.store import Store, migrations

pytest.importorskip("psycopg")

POSTGRESQL = {"ID": "SERIAL", "TIME": "TIMESTAMP WITH TIME ZONE"}


@pytest.fixture
def old(pg_url):  # noqa: F811
    """The server's database as release 1694ff9 left it, holding test_migrations.DATA."""
    store = Store(pg_url)
    SQLModel.metadata.drop_all(store.engine)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # DATA's times are UTC
        for statement in release_1694ff9_statements(POSTGRESQL):
            conn.exec_driver_sql(statement)
    store.close()
    return pg_url


def columns_of_digest(url: str) -> set[str]:
    with Store(url) as store, store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT column_name FROM information_schema.columns WHERE table_name = 'digest'")
        return {name for (name,) in rows}


def test_a_release_1694ff9_database_on_postgresql_is_upgraded_on_open_and_keeps_every_row(old):
    with Store.open_existing(old) as store:
        assert store.revision().recorded == migrations.HEAD
        assert_everything_is_found(store)
        with store.engine.connect() as conn:
            assert_schema_is_the_models(conn)


def test_several_openers_at_once_upgrade_it_once_and_share_one_installation_id(old):
    found, errors = [], []

    def opener() -> None:
        try:
            with Store.open_existing(old) as store:
                found.append(store.installation)
        except Exception as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(found) == 4 and len(set(found)) == 1
    with Store.open_existing(old) as store:
        assert_everything_is_found(store)


def test_db_current_and_db_upgrade_on_postgresql(old, tmp_path: Path):
    config = tmp_path / "config.toml"
    text = config_text("http://127.0.0.1:9", 25, ["a@example.org"])
    config.write_text(text.replace('database = "sqlite:///state/bot.db"', f'database = "{old}"'), encoding="utf-8")
    world = World(tmp_path, config)
    assert "its tables are revision 0001" in world.cli("db", "current").stdout
    upgrade = world.run("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"upgraded from revision 0001 to {migrations.HEAD}" in upgrade.stdout and "copy" not in upgrade.stdout
    assert "the newest; nothing to upgrade" in world.cli("db", "current").stdout
    with Store.open_existing(old) as store:
        assert_everything_is_found(store)


def test_a_failed_upgrade_on_postgresql_changes_nothing(old):
    with Store(old) as store, store.engine.begin() as conn:  # 0002's new table's name is taken
        conn.exec_driver_sql("CREATE INDEX installation ON paper (title)")
    with pytest.raises(StoreError, match="cannot upgrade the schema"):
        Store.open_existing(old)
    assert "claimed_by" not in columns_of_digest(old)  # added first by 0002, rolled back with the rest
    with Store(old) as store:
        assert store.revision().recorded is None


def test_a_new_postgresql_database_is_made_at_the_newest_revision(pg_url):  # noqa: F811
    with Store(pg_url) as store:
        SQLModel.metadata.drop_all(store.engine)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        store.create_tables()
        assert store.revision().recorded == migrations.HEAD and store.upgrade() is None
        with store.engine.connect() as conn:
            assert_schema_is_the_models(conn)
