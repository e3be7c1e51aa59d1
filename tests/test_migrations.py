"""Schema migrations (Alembic) on real SQLite files: a database made by release 1694ff9, the last one
before migrations, with papers, matches, deliveries and digests, upgraded on open and by
`digestbot db upgrade`; `db current`; a new database at the newest revision; two openers at once; a
failed upgrade rolled back; the migrations shipped in the wheel.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_world import World, config_text
from sqlalchemy import Connection

from digestbot.errors import StoreError
from digestbot.store import Store, migrations
from digestbot.store.ledger import Ledger

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

# The tables of release 1694ff9 (`git show 1694ff9:digestbot/tables.py`, as SQLModel created them),
# for SQLite ({ID} INTEGER, {TIME} DATETIME) and PostgreSQL ({ID} SERIAL, {TIME} TIMESTAMP WITH TIME ZONE).
RELEASE_1694FF9 = """
CREATE TABLE digest (id {ID} NOT NULL, subscription VARCHAR NOT NULL, channel VARCHAR NOT NULL,
    target VARCHAR NOT NULL, period VARCHAR NOT NULL, status VARCHAR NOT NULL, papers INTEGER NOT NULL,
    attempts INTEGER NOT NULL, next_try {TIME}, lease_until {TIME}, last_error VARCHAR, message_id VARCHAR,
    created {TIME} NOT NULL, sent_at {TIME}, PRIMARY KEY (id), UNIQUE (subscription, channel, target, period));
CREATE INDEX ix_digest_active ON digest (id) WHERE status IN ('pending', 'sending');
CREATE TABLE paper (id {ID} NOT NULL, arxiv_id VARCHAR, slug VARCHAR NOT NULL, title VARCHAR NOT NULL,
    abstract VARCHAR NOT NULL, authors VARCHAR NOT NULL, published {TIME}, url VARCHAR, upvotes INTEGER NOT NULL,
    ai_summary VARCHAR, ai_keywords VARCHAR NOT NULL, github VARCHAR, project_page VARCHAR,
    sources VARCHAR NOT NULL, first_seen {TIME} NOT NULL, updated {TIME} NOT NULL, PRIMARY KEY (id),
    UNIQUE (arxiv_id));
CREATE INDEX ix_paper_first_seen ON paper (first_seen);
CREATE INDEX ix_paper_slug ON paper (slug);
CREATE TABLE source_state (name VARCHAR NOT NULL, last_poll {TIME}, last_success {TIME}, last_error VARCHAR,
    last_error_at {TIME}, papers_seen INTEGER NOT NULL, last_new INTEGER NOT NULL, validators VARCHAR NOT NULL,
    PRIMARY KEY (name));
CREATE TABLE delivery (id {ID} NOT NULL, subscription VARCHAR NOT NULL, paper_id INTEGER NOT NULL,
    channel VARCHAR NOT NULL, target VARCHAR NOT NULL, status VARCHAR NOT NULL, digest_id INTEGER,
    created {TIME} NOT NULL, PRIMARY KEY (id), UNIQUE (subscription, paper_id, channel, target),
    FOREIGN KEY(paper_id) REFERENCES paper (id), FOREIGN KEY(digest_id) REFERENCES digest (id));
CREATE INDEX ix_delivery_subscription ON delivery (subscription);
CREATE INDEX ix_delivery_digest_id ON delivery (digest_id);
CREATE INDEX ix_delivery_waiting ON delivery (subscription, channel, target) WHERE digest_id IS NULL;
CREATE TABLE "match" (id {ID} NOT NULL, subscription VARCHAR NOT NULL, paper_id INTEGER NOT NULL,
    score FLOAT NOT NULL, hits VARCHAR NOT NULL, created {TIME} NOT NULL, PRIMARY KEY (id),
    UNIQUE (subscription, paper_id), FOREIGN KEY(paper_id) REFERENCES paper (id));
CREATE INDEX ix_match_paper_id ON "match" (paper_id);
"""
T = "'2026-11-20 08:00:00.000000'"
# Three papers; "ml" matched all three, "nlp" one. ml's email digest of papers 1-2 was sent, its
# Slack digest of them is pending; paper 3 waits for ml's next digest, paper 2 for nlp's.
DATA = f"""
INSERT INTO paper VALUES (1, '2411.00001', 'a-first-paper', 'A first paper', 'About one thing.', '["Ada"]', {T},
    'https://arxiv.org/abs/2411.00001', 3, NULL, '[]', NULL, NULL, '["hf"]', {T}, {T});
INSERT INTO paper VALUES (2, NULL, 'a-second-paper', 'A second paper', 'About another.', '[]', NULL, NULL, 0,
    'summary', '["kw"]', 'https://github.com/x/y', NULL, '["feed"]', {T}, {T});
INSERT INTO paper VALUES (3, '2411.00003', 'a-third-paper', 'A third paper', '', '[]', NULL, NULL, 1, NULL, '[]',
    NULL, NULL, '["hf","feed"]', {T}, {T});
INSERT INTO source_state VALUES ('hf', {T}, {T}, NULL, NULL, 4, 2, '{{}}');
INSERT INTO "match" VALUES (1, 'ml', 1, 2.5, '[["title", "first"]]', {T});
INSERT INTO "match" VALUES (2, 'ml', 2, 1.0, '[]', {T});
INSERT INTO "match" VALUES (3, 'ml', 3, 0.5, '[]', {T});
INSERT INTO "match" VALUES (4, 'nlp', 2, 1.5, '[]', {T});
INSERT INTO digest VALUES (1, 'ml', 'email', 'a@example.org', '2026-11-20', 'sent', 2, 1, NULL, NULL, NULL,
    '<digest-1.ml@example.org>', {T}, {T});
INSERT INTO digest VALUES (2, 'ml', 'slack', '#papers', '2026-11-20', 'pending', 2, 0, {T}, NULL, NULL, NULL,
    {T}, NULL);
INSERT INTO delivery VALUES (1, 'ml', 1, 'email', 'a@example.org', 'sent', 1, {T});
INSERT INTO delivery VALUES (2, 'ml', 2, 'email', 'a@example.org', 'sent', 1, {T});
INSERT INTO delivery VALUES (3, 'ml', 1, 'slack', '#papers', 'pending', 2, {T});
INSERT INTO delivery VALUES (4, 'ml', 2, 'slack', '#papers', 'pending', 2, {T});
INSERT INTO delivery VALUES (5, 'ml', 3, 'email', 'a@example.org', 'pending', NULL, {T});
INSERT INTO delivery VALUES (6, 'nlp', 2, 'email', 'b@example.org', 'pending', NULL, {T});
"""
SQLITE = {"ID": "INTEGER", "TIME": "DATETIME"}


def release_1694ff9_statements(types: dict[str, str]) -> list[str]:
    """That release's tables holding DATA, as SQL statements."""
    script = RELEASE_1694FF9.format(**types) + DATA
    return [s.strip() for s in script.split(";") if s.strip()]


def old_sqlite(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")  # as digestbot opened it (the -wal file must travel too)
        for statement in release_1694ff9_statements(SQLITE):
            conn.execute(statement)
    return path


def assert_everything_is_found(store: Store) -> None:
    """Every paper, match and digest of DATA, read through the Store API, and the new schema at work."""
    assert {p.title for p in store.papers()} == {"A first paper", "A second paper", "A third paper"}
    assert {p.arxiv_id for p in store.papers_by_keys(["2411.00001", "a-second-paper"])} == {"2411.00001", None}
    digests = {d.id: (d.subscription_id, d.channel, d.status, d.message_id) for d in store.digests()}
    assert digests == {1: ("ml", "email", "sent", "<digest-1.ml@example.org>"), 2: ("ml", "slack", "pending", None)}
    for digest_id in (1, 2):
        matched = {(m.paper.title, m.score) for m in store.digest_matches(digest_id)}
        assert matched == {("A first paper", 2.5), ("A second paper", 1.0)}
    assert [m.paper.title for m in store.pending_matches("ml")] == ["A third paper"]
    assert [(m.paper.title, m.score) for m in store.pending_matches("nlp")] == [("A second paper", 1.5)]
    assert store.source_states()["hf"].papers_seen == 4
    ledger = Ledger(store, clock=lambda: NOW)
    [claim] = ledger.claim_batch(NOW)  # digest.claimed_by, new in 0002, at work
    assert claim.id == 2
    ledger.sent(2, "<digest-2@x>", NOW)
    assert ledger.get(2).status == "sent" and ledger.lost == set()
    assert len(store.installation) == 12  # the installation table, new in 0002


def assert_schema_is_the_models(conn: Connection) -> None:
    """The upgraded tables, columns, indexes and constraints are those tables.py declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def backups(db: Path) -> list[Path]:
    return sorted(db.parent.glob(f"{db.name}.before-*"))


def world(tmp_path: Path) -> World:
    (tmp_path / "state").mkdir(exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_text(config_text("http://127.0.0.1:9", 25, ["a@example.org"]), encoding="utf-8")
    return World(tmp_path, config)


def test_a_release_1694ff9_database_is_upgraded_on_open_after_a_private_copy_and_keeps_every_row(tmp_path, caplog):
    db = old_sqlite(tmp_path / "digestbot.db")
    store = Store.open_existing(f"sqlite:///{db}")
    assert (store.revision().recorded, store.revision().newest) == (migrations.HEAD, True)
    assert_everything_is_found(store)
    with store.engine.connect() as conn:
        assert_schema_is_the_models(conn)
    [copy] = backups(db)
    assert copy.name.startswith("digestbot.db.before-0001-") and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert f"a copy from before is {copy}" in caplog.text
    with sqlite3.connect(copy) as old:  # the copy is the database as it was, data and all
        assert old.execute("SELECT count(*) FROM paper").fetchone() == (3,)
        assert "claimed_by" not in {row[1] for row in old.execute("PRAGMA table_info(digest)")}
    store.close()
    Store.open_existing(f"sqlite:///{db}").close()
    assert backups(db) == [copy]  # at the newest revision: nothing to do, no second copy


def test_db_current_and_db_upgrade_tell_an_operator_what_there_is_and_what_was_done(tmp_path):
    w = world(tmp_path)
    old_sqlite(w.db)
    current = w.cli("db", "current")
    assert current.returncode == 0, current.stderr
    assert "no revision recorded (made before migrations); its tables are revision 0001" in current.stdout
    assert f"the newest is {migrations.HEAD}: `digestbot db upgrade` applies 0002" in current.stdout
    assert backups(w.db) == [] and Store.open_existing(f"sqlite:///{w.db}", upgrade=False).revision().recorded is None
    upgrade = w.run("db", "upgrade")  # the real command line, in its own process
    assert upgrade.returncode == 0, upgrade.stderr
    [copy] = backups(w.db)
    assert f"upgraded from revision 0001 to {migrations.HEAD}" in upgrade.stdout
    assert f"a copy from before the upgrade: {copy}" in upgrade.stdout
    assert f"revision {migrations.HEAD} (" in w.cli("db", "current").stdout
    assert "the newest; nothing to upgrade" in w.cli("db", "current").stdout
    assert "already at revision" in w.cli("db", "upgrade").stdout and backups(w.db) == [copy]
    with Store.open_existing(f"sqlite:///{w.db}") as store:
        assert_everything_is_found(store)


def test_a_new_database_is_made_at_the_newest_revision_with_the_tables_the_migrations_give(tmp_path):
    w = world(tmp_path)
    assert w.cli("init").returncode == 0
    current = w.cli("db", "current")
    assert f"revision {migrations.HEAD} ({migrations.REVISIONS[migrations.HEAD]}): the newest" in current.stdout
    with Store.open_existing(f"sqlite:///{w.db}") as store, store.engine.connect() as conn:
        assert_schema_is_the_models(conn)
    assert backups(w.db) == []
    migrated = Store(f"sqlite:///{tmp_path / 'migrated.db'}")  # the revisions alone, from nothing
    with migrated.engine.connect() as conn, conn.begin():
        from alembic import command

        from digestbot.store.upkeep import alembic_config

        command.upgrade(alembic_config(conn), "head")
    with migrated.engine.connect() as conn:
        assert_schema_is_the_models(conn)


def test_two_processes_opening_an_old_database_at_once_upgrade_it_once(tmp_path):
    w = world(tmp_path)
    old_sqlite(w.db)
    both = [w.start("status"), w.start("status")]
    assert [p.wait(timeout=120) for p in both] == [0, 0], [p.communicate() for p in both]
    [copy] = backups(w.db)  # the process that found the work done removed its own copy
    with Store.open_existing(f"sqlite:///{w.db}") as store:
        assert store.revision().newest
        assert_everything_is_found(store)


def test_two_threads_opening_an_old_database_at_once_both_get_the_upgraded_one(tmp_path):
    db = old_sqlite(tmp_path / "digestbot.db")
    found, errors = [], []

    def opener() -> None:
        try:
            with Store.open_existing(f"sqlite:///{db}") as store:
                found.append(store.installation)
        except Exception as exc:  # reported below, with the thread's failure
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(found) == 3 and len(set(found)) == 1
    assert len(backups(db)) == 1


def test_a_failed_upgrade_changes_nothing_and_names_the_copy(tmp_path, caplog):
    db = old_sqlite(tmp_path / "digestbot.db")
    with sqlite3.connect(db) as conn:  # the name of 0002's new table is taken: its CREATE TABLE fails
        conn.execute("CREATE INDEX installation ON paper (title)")
    with pytest.raises(StoreError, match="cannot upgrade the schema"):
        Store.open_existing(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:  # all or nothing: the column 0002 added first is gone again
        assert "claimed_by" not in {row[1] for row in conn.execute("PRAGMA table_info(digest)")}
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "alembic_version" not in tables and conn.execute("SELECT count(*) FROM delivery").fetchone() == (6,)
    [copy] = backups(db)
    assert f"a copy from before it is {copy}" in caplog.text


def test_a_database_from_a_newer_digestbot_is_refused_and_left_as_it_is(tmp_path):
    db = old_sqlite(tmp_path / "digestbot.db")
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0099')")
    with pytest.raises(StoreError, match="schema revision 0099, which this digestbot does not know"):
        Store.open_existing(f"sqlite:///{db}")
    assert backups(db) == []


def test_the_revision_list_is_the_chain_of_revision_files():
    from alembic.script import ScriptDirectory

    from digestbot.store.upkeep import alembic_config

    script = ScriptDirectory.from_config(alembic_config(None))
    chain = [s.revision for s in reversed(list(script.walk_revisions()))]
    assert chain == list(migrations.REVISIONS) and script.get_heads() == [migrations.HEAD]


def test_the_wheel_ships_the_migrations(tmp_path):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside pyproject.toml
    shutil.copytree(ROOT / "digestbot", source / "digestbot", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path), str(source)], capture_output=True, text=True,
                           env={**os.environ, "PIP_NO_INPUT": "1"})
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("digestbot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"digestbot/store/migrations/env.py", "digestbot/store/migrations/script.py.mako",
            "digestbot/store/migrations/versions/0001_release_1694ff9.py",
            "digestbot/store/migrations/versions/0002_claims_and_installation.py"} <= names


def test_opening_a_database_at_the_newest_revision_reads_one_row_and_loads_no_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'digestbot.db'}"
    Store(url).create_tables()
    code = f"import sys; from digestbot.store import Store; Store.open_existing({url!r}).close(); " \
           f"print('alembic' in sys.modules)"
    opened = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (opened.returncode, opened.stdout.strip()) == (0, "False"), opened.stderr
