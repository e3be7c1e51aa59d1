"""The database's installation id (Message-IDs unique for ever), completing a file an interrupted first
run left empty, and the database file's mode. Real CLI in subprocesses, aiosmtpd, SQLite files.
"""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from delivery_world import init, make_world

from digestbot.store import Store

COUNTED = ("paper", "match", "delivery", "digest", "source_state")


def installation_of(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM installation")]


def table_names(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}


def remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


def test_a_new_database_sending_the_same_papers_again_never_reuses_a_message_id(tmp_path, http_server,
                                                                                smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    assert world.run("run", "--once").returncode == 0
    remove_database(world.db)  # starting over on purpose: digest 1 again, for the same papers
    init(world)
    again = world.run("run", "--once")
    assert again.returncode == 0, again.stdout + again.stderr
    first, second = (m["Message-ID"] for m in smtp_server.messages)
    assert first.startswith("<digest-1.") and second.startswith("<digest-1.")
    assert first != second  # a client de-duplicating by Message-ID shows both


def test_a_digest_sent_again_after_a_crash_keeps_its_message_id_which_names_the_installation(
        tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"], send_lease=1)
    init(world)
    killed = world.run("run", "--once", plugins=["kill_after_send"])
    assert killed.returncode == -signal.SIGKILL
    time.sleep(1.2)  # let the 1-second lease run out (a wait, not an assertion on time)
    assert world.run("run", "--once").returncode == 0
    [installation] = installation_of(world.db)
    [row] = world.rows()
    expected = f"<digest-{row['id']}.{installation}.{row['subscription']}@example.org>"
    assert [m["Message-ID"] for m in smtp_server.messages] == [expected, expected]
    assert row["message_id"] == expected and re.fullmatch(r"[0-9a-f]{12}", installation)


def test_a_database_made_before_installation_ids_gets_one_on_open_and_keeps_every_row(tmp_path, http_server,
                                                                                      smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    assert world.run("run", "--once").returncode == 0
    with sqlite3.connect(world.db) as conn:
        conn.execute("DROP TABLE IF EXISTS installation")  # as an older digestbot made it
        conn.execute("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    before = counts(world.db)
    assert before["digest"] >= 1 and before["paper"] == 6
    both = [world.start("status"), world.start("status")]  # two processes upgrading it at once
    assert [p.wait(timeout=120) for p in both] == [0, 0], [p.communicate() for p in both]
    assert counts(world.db) == before
    [installation] = installation_of(world.db)
    assert world.cli("status").returncode == 0 and installation_of(world.db) == [installation]  # kept


@pytest.mark.parametrize("leftover", ["zero bytes", "a header and no tables"])
def test_an_empty_file_left_by_an_interrupted_first_run_is_completed_with_a_warning(tmp_path, http_server,
                                                                                  smtp_server, leftover):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    world.db.touch()
    if leftover != "zero bytes":
        with sqlite3.connect(world.db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # writes the header: a valid database, nothing in it
        assert world.db.stat().st_size > 0 and table_names(world.db) == set()
    result = world.run("run", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "empty file" in result.stderr and "creating its tables" in result.stderr
    assert {"paper", "delivery", "digest", "installation"} <= table_names(world.db)
    assert len(installation_of(world.db)) == 1 and len(smtp_server.received) == 1


def test_a_file_with_other_tables_is_still_refused_and_left_untouched(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    with sqlite3.connect(world.db) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    result = world.run("run", "--once")
    assert result.returncode == 1 and "not a digestbot database" in result.stderr
    assert table_names(world.db) == {"notes"} and smtp_server.received == []


def test_the_database_and_its_folder_are_private_under_umask_022(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    world.db.parent.rmdir()  # the first run makes the folder too
    old = os.umask(0o022)
    try:
        init(world)
        with Store(f"sqlite:///{world.db}") as store, store.write():
            files = [world.db.with_name(world.db.name + s) for s in ("", "-wal", "-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
    finally:
        os.umask(old)
    assert modes == {"bot.db": 0o600, "bot.db-wal": 0o600, "bot.db-shm": 0o600}
    assert stat.S_IMODE(world.db.parent.stat().st_mode) == 0o700


def test_init_completes_an_empty_file_instead_of_asking_for_force(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    world.db.touch()  # what an older version killed while creating its database left
    result = world.cli("init")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created" in result.stdout and not list(tmp_path.rglob("*.broken-*"))
    assert {"paper", "delivery", "digest", "installation"} <= table_names(world.db)
