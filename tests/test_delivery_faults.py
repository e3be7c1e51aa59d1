"""Faults around sending, each reproduced with real components: `digestbot` in a subprocess, aiosmtpd,
the real slack_sdk client against SlackServer, SQLite files. Every test names the protection it checks.
"""
from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from delivery_world import StoppingSmtpServer, init, make_world
from fixtures import daily_items

RECIPIENTS = [f"r{i}@example.org" for i in range(6)]


def received_by(smtp) -> Counter:
    return Counter(r for received in smtp.received for r in received.rcpt_tos)


def test_smtp_server_stopping_mid_batch_then_returning_delivers_exactly_the_missing(tmp_path, http_server):
    with StoppingSmtpServer(stop_after=2) as smtp:
        world = make_world(tmp_path, http_server, smtp_port=smtp.port, emails=RECIPIENTS)
        init(world)
        first = world.run("run", "--once")
        smtp.stopper.join()
        assert first.returncode == 1
        assert "421" in first.stdout and "not attempted" in first.stdout  # a clear error, once
        assert len(smtp.received) == 2
        smtp.stop_after = None
        smtp.start()  # the server is back on the same port
        assert world.cli("retry").returncode == 0
        second = world.run("run", "--once")
        assert second.returncode == 0, second.stdout + second.stderr
        assert received_by(smtp) == Counter(RECIPIENTS)  # every recipient exactly once
        assert {r["status"] for r in world.rows()} == {"sent"}


def test_killed_after_send_before_commit_resends_once_with_the_same_message_id(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"], send_lease=1)
    init(world)
    killed = world.run("run", "--once", plugins=["kill_after_send"])
    assert killed.returncode == -signal.SIGKILL
    assert len(smtp_server.received) == 1
    assert [r["status"] for r in world.rows()] == ["sending"]  # the ledger never heard of the send
    time.sleep(1.2)  # let the 1-second lease run out (a wait, not an assertion on time)
    again = world.run("run", "--once")
    assert again.returncode == 0, again.stdout + again.stderr
    ids = {m["Message-ID"] for m in smtp_server.messages}
    assert 1 <= len(smtp_server.received) <= 2 and len(ids) == 1  # a duplicate is recognisable
    [row] = world.rows()
    assert row["status"] == "sent" and row["message_id"] == ids.pop()


def test_per_recipient_450_is_retried_550_fails_for_good_and_the_third_is_unaffected(tmp_path, http_server,
                                                                                      smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port,
                       emails=["soft@example.org", "hard@example.org", "fine@example.org"])
    init(world)
    smtp_server.fail_rcpt = {"soft@example.org": "450 4.2.1 mailbox busy, try later",
                             "hard@example.org": "550 5.1.1 no such user"}
    first = world.run("run", "--once")
    assert first.returncode == 1
    assert received_by(smtp_server) == Counter(["fine@example.org"])
    status = world.cli("status").stdout
    assert "failed 1" in status and "550 5.1.1 no such user" in status and "450 4.2.1" in status
    smtp_server.fail_rcpt = {}  # both would now be accepted: only the 4xx one may be tried again
    assert world.cli("retry").returncode == 0
    second = world.run("run", "--once")
    assert second.returncode == 0, second.stdout + second.stderr
    assert received_by(smtp_server) == Counter(["fine@example.org", "soft@example.org"])
    by_target = {r["target"]: r for r in world.rows()}
    assert by_target["hard@example.org"]["status"] == "failed" and by_target["hard@example.org"]["attempts"] == 1
    assert by_target["soft@example.org"]["attempts"] == 2
    # `retry --failed` is the operator's way to try the permanent failure again
    assert world.cli("retry", "--failed").returncode == 0
    assert world.run("run", "--once").returncode == 0
    assert received_by(smtp_server) == Counter(RECIPIENTS[:0] + ["fine@example.org", "soft@example.org",
                                                                 "hard@example.org"])


def test_two_runs_at_the_same_time_deliver_every_digest_exactly_once(tmp_path, http_server):
    recipients = [f"c{i}@example.org" for i in range(30)]
    with StoppingSmtpServer(stop_after=None, delay=0.01) as smtp:  # a slow server widens the overlap
        world = make_world(tmp_path, http_server, smtp_port=smtp.port, emails=recipients)
        init(world)
        first, second = world.start("run", "--once"), world.start("run", "--once")
        outputs = [p.communicate(timeout=120) for p in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, outputs
        assert received_by(smtp) == Counter(recipients)
        assert [r["status"] for r in world.rows()] == ["sent"] * len(recipients)


def test_database_locked_longer_than_busy_timeout_sends_nothing_and_the_next_run_works(tmp_path, http_server,
                                                                                      smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"],
                       busy_timeout=0.3)
    init(world)
    blocker = sqlite3.connect(world.db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holding the lock
    try:
        locked = world.run("run", "--once")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert locked.returncode == 1
    assert "database busy" in locked.stdout + locked.stderr
    assert smtp_server.received == []
    after = world.run("run", "--once")
    assert after.returncode == 0, after.stdout + after.stderr
    assert received_by(smtp_server) == Counter(["a@example.org"])


def test_a_fresh_install_starts_and_a_database_lost_later_is_refused(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    first = world.run("run", "--once")  # no `init`: a new installation just works
    assert first.returncode == 0, first.stdout + first.stderr
    assert world.db.exists() and len(smtp_server.received) == 1
    for suffix in ("", "-wal", "-shm"):
        world.db.with_name(world.db.name + suffix).unlink(missing_ok=True)  # a volume not mounted, say
    refused = world.run("run", "--once")
    assert refused.returncode == 1 and "restore it from a backup" in refused.stderr
    assert not world.db.exists() and len(smtp_server.received) == 1
    assert world.cli("init").returncode == 0 and world.db.exists()  # starting over is a decision


@pytest.mark.parametrize("damage", ["deleted", "emptied", "garbage"])
def test_a_lost_or_damaged_database_is_refused_never_restarted_from_empty(tmp_path, http_server, smtp_server,
                                                                          damage):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    init(world)
    assert world.run("run", "--once").returncode == 0 and len(smtp_server.received) == 1
    for suffix in ("-wal", "-shm"):
        world.db.with_name(world.db.name + suffix).unlink(missing_ok=True)
    if damage == "deleted":
        world.db.unlink()
    else:
        world.db.write_bytes(b"" if damage == "emptied" else b"this is not a database file at all " * 200)
    refused = world.run("run", "--once")
    assert refused.returncode == 1
    assert "backup" in refused.stderr and "digestbot init" in refused.stderr
    assert len(smtp_server.received) == 1  # history was not sent again
    if damage != "deleted":  # init keeps a damaged file unless told otherwise
        assert world.cli("init").returncode == 1 and world.db.exists()
        forced = world.cli("init", "--force")
        assert forced.returncode == 0 and "moved the old database" in forced.stdout
        assert list(world.db.parent.glob("bot.db.broken-*"))


def test_crlf_in_a_subscriber_address_or_name_is_a_config_error_before_any_connection(tmp_path, http_server,
                                                                                     smtp_server):
    for bad in ('email = ["a@example.org\\r\\nBcc: x@evil.example"]', 'name = "x\\r\\nBcc: x@evil.example"'):
        other = 'name = "other"\n' if "email" in bad else 'email = ["b@example.org"]\n'
        sub = f'\n[[subscriptions]]\n{bad}\n' + other
        world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"],
                           extra_sub=sub)
        result = world.run("run", "--once")
        assert result.returncode == 2 and "line break" in result.stderr and "config.toml:" in result.stderr
    assert smtp_server.received == []


def test_crlf_in_a_paper_title_never_reaches_a_header(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    [item] = daily_items(1)
    item["title"] = item["paper"]["title"] = "Fast decoding\r\nBcc: victim@evil.example\r\n\r\nhello"
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): [item]})
    result = world.run("run", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    [received] = smtp_server.received
    assert received.rcpt_tos == ["a@example.org"] and received.message["Bcc"] is None
    head = received.raw.split(b"\r\n\r\n", 1)[0]
    assert b"victim" not in head and "Fast decoding Bcc: victim@evil.example hello" in received.message.get_body(
        ("plain",)).get_content()


def test_the_delivery_commands_are_documented():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for command in ("retry [--failed]", "init [--force]", "status"):
        assert f"digestbot [-c CONFIG] {command}" in readme
    for option in ("send_lease", "min_interval", "slack_webhook", "slack_webhook_env"):
        assert option in (Path(__file__).resolve().parent.parent / "config.example.toml").read_text()
