"""`digestbot serve` for real: the serve process, `digestbot run` (once and as a daemon) in their own
processes, on one config file and one SQLite database, against loopback listing and SMTP servers.

A reader leaves with the one-click URL of their digest's List-Unsubscribe header, POSTed as a mail
client does (RFC 8058); the next digests go to the others only, whatever the admin does to the config,
until the reader's own undo."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from delivery_world import World, init, make_world
from fixtures import daily_items
from servers import free_port

ALICE, BOB = "alice@example.org", "bob@example.org"
SECRET_ENV = "DIGESTBOT_TEST_LINK_SECRET"
PUBLIC = "https://digest.example.test"  # the TLS reverse proxy in front of `digestbot serve` (not run here)
ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"content-type": "application/x-www-form-urlencoded"}}


def web_world(tmp_path: Path, http_server, smtp_server, *, every: str = "15m") -> tuple[World, str]:
    port = free_port()
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE, BOB])
    text = world.config.read_text(encoding="utf-8")
    text = text.replace("[bot]\n", f'[bot]\npublic_url = "{PUBLIC}/"\n', 1)
    text = text.replace("limit = 10\n", f'limit = 10\nevery = "{every}"\n', 1)
    text = text.replace("[[subscriptions]]\n", f'[web]\nlisten = "127.0.0.1:{port}"\nsecret_env = "{SECRET_ENV}"\n\n'
                        "# everything, for the whole lab\n[[subscriptions]]\n", 1)
    text = text.replace(f'email = ["{ALICE}", "{BOB}"]\n', f'email = ["{ALICE}", "{BOB}"]   # the readers\n', 1)
    world.config.write_text(text, encoding="utf-8")
    world.env[SECRET_ENV] = "a-secret-only-this-test-knows"
    init(world)
    return world, f"http://127.0.0.1:{port}"


def start_serve(world: World, base: str) -> subprocess.Popen:
    process = world.start("serve")
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code in (200, 503):
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"digestbot serve did not start: {process.communicate()[1]}")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    _, err = process.communicate(timeout=30)
    return err


@pytest.fixture
def served(tmp_path, http_server, smtp_server):
    world, base = web_world(tmp_path, http_server, smtp_server)
    process = start_serve(world, base)
    yield world, base, process
    err = stop(process)
    assert "token=" not in err  # tokens are never logged


def one_click_url(message, base: str) -> str:
    """The header's URL, as the proxy passes it to `digestbot serve` at `base`."""
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [url] = re.findall(r"<([^>]*)>", "".join(str(message["List-Unsubscribe"]).split()))
    assert url.startswith(f"{PUBLIC}/unsubscribe?token=")
    return base + url.removeprefix(PUBLIC)


def suppressions(world: World) -> list[tuple[str, str]]:
    with sqlite3.connect(world.db) as db:
        return db.execute("SELECT subscription, target FROM suppression").fetchall()


def new_papers(http_server, count: int) -> None:
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): daily_items(count)})


def run_once(world: World) -> subprocess.CompletedProcess:
    result = world.run("run", "--once")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def recipients(smtp_server, since: int) -> list[str]:
    return sorted(r for rcpts in smtp_server.rcpts[since:] for r in rcpts)


def test_a_reader_leaves_in_one_click_and_gets_nothing_more_until_they_undo(served, http_server, smtp_server):
    world, base, _ = served
    assert run_once(world).returncode == 0
    assert recipients(smtp_server, 0) == [ALICE, BOB]
    alice_mail = next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE])
    url = one_click_url(alice_mail, base)
    assert url.startswith(f"{base}/unsubscribe?token=") and "target=" not in url and "list=" not in url
    before = world.config.read_text(encoding="utf-8")

    # A GET (a link scanner, a preview) changes nothing: it shows one button.
    page = httpx.get(url)
    assert page.status_code == 200 and '<form method="post"' in page.text and "<script" not in page.text
    assert world.config.read_text(encoding="utf-8") == before and suppressions(world) == []

    # A tampered token is refused, and changes nothing.
    token = url.partition("token=")[2]
    for bad in (token[:-3], token[:10] + ("A" if token[10] != "A" else "B") + token[11:], token.split(".")[0]):
        refused = httpx.post(f"{base}/unsubscribe?token={bad}", **ONE_CLICK)
        assert refused.status_code == 400 and "Nothing was changed" in refused.text
    assert world.config.read_text(encoding="utf-8") == before and suppressions(world) == []

    # New papers; Alice's server refuses for now: her digest waits, queued.
    new_papers(http_server, 9)
    smtp_server.fail_rcpt[ALICE] = "450 4.2.1 mailbox busy, try later"
    run_once(world)
    queued = [row for row in world.rows() if row["target"] == ALICE and row["status"] == "pending"]
    assert len(queued) == 1

    # The mail client's one-click POST: done at once.
    left = httpx.post(url, **ONE_CLICK)
    assert left.status_code == 200 and "You have left" in left.text
    after = world.config.read_text(encoding="utf-8")
    assert ALICE not in after and re.search(rf'email = \["{BOB}"\] +# the readers\n', after)  # comments stay
    assert "# everything, for the whole lab\n[[subscriptions]]" in after
    assert world.cli("check").returncode == 0
    assert suppressions(world) == [("everything", ALICE)]
    assert [row["status"] for row in world.rows() if row["id"] == queued[0]["id"]] == ["cancelled"]
    again = httpx.post(url, **ONE_CLICK)  # idempotent
    assert again.status_code == 200 and world.config.read_text(encoding="utf-8") == after
    assert suppressions(world) == [("everything", ALICE)]

    # The next run: Bob gets his digest, Alice nothing (her server accepts mail again).
    smtp_server.fail_rcpt.clear()
    new_papers(http_server, 12)
    sent = len(smtp_server.received)
    run_once(world)
    assert recipients(smtp_server, sent) == [BOB]

    # The admin lists her again: still nothing for her; the suppression is hers to lift.
    assert world.cli("subs", "set", "everything", f"email={ALICE},{BOB}").returncode == 0
    new_papers(http_server, 15)
    sent = len(smtp_server.received)
    run_once(world)
    assert recipients(smtp_server, sent) == [BOB]

    # Her undo: the mail comes back with the next new papers.
    [undo] = re.findall(r'<form method="post" action="([^"]+)"', left.text)
    assert undo.startswith("/resubscribe?token=")
    back = httpx.post(base + undo, **ONE_CLICK)
    assert back.status_code == 200 and "Welcome back" in back.text
    assert suppressions(world) == [] and ALICE in world.config.read_text(encoding="utf-8")
    new_papers(http_server, 18)
    sent = len(smtp_server.received)
    run_once(world)
    assert recipients(smtp_server, sent) == [ALICE, BOB]


def test_undo_puts_the_address_back_in_the_config(served, smtp_server):
    world, base, _ = served
    run_once(world)
    url = one_click_url(next(r.message for r in smtp_server.received if r.rcpt_tos == [BOB]), base)
    left = httpx.post(url, **ONE_CLICK)
    assert BOB not in world.config.read_text(encoding="utf-8")
    [undo] = re.findall(r'<form method="post" action="([^"]+)"', left.text)
    assert httpx.post(base + undo, **ONE_CLICK).status_code == 200
    assert re.search(rf'email = \["{ALICE}", "{BOB}"\] +# the readers\n', world.config.read_text(encoding="utf-8"))
    assert suppressions(world) == []
    # An unsubscribe token is no undo token, nor the other way round.
    token = url.partition("token=")[2]
    assert httpx.post(f"{base}/resubscribe?token={token}", **ONE_CLICK).status_code == 400
    assert httpx.post(f"{base}/unsubscribe?{undo.partition('?')[2]}", **ONE_CLICK).status_code == 400


def test_every_response_has_the_security_headers_and_big_bodies_are_refused(served):
    world, base, _ = served
    for response in (httpx.get(f"{base}/unsubscribe"), httpx.get(f"{base}/unsubscribe?token=x"),
                     httpx.get(f"{base}/healthz"), httpx.get(f"{base}/nowhere")):
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert httpx.get(f"{base}/unsubscribe").status_code == 200  # the digest footer's page: how to leave
    assert httpx.post(f"{base}/unsubscribe?token=x", content=b"x" * 17000).status_code == 413

    def chunks():
        for _ in range(40):
            yield b"y" * 1024

    big = httpx.post(f"{base}/unsubscribe?token=x", content=chunks())  # no Content-Length: counted as it comes
    assert big.status_code == 413 and big.headers["x-frame-options"] == "DENY"


def test_healthz_says_whether_the_database_answers(served, smtp_server):
    world, base, _ = served
    assert httpx.get(f"{base}/healthz").json() == {"database": "ok", "last_successful_poll_age_s": None,
                                                   "daemon_heartbeat_age_s": None, "daemons": []}
    run_once(world)
    health = httpx.get(f"{base}/healthz")
    assert health.status_code == 200 and 0 <= health.json()["last_successful_poll_age_s"] < 120
    moved = world.db.with_name("elsewhere.db")
    world.db.rename(moved)  # the database is gone from where the config says it is
    try:
        down = httpx.get(f"{base}/healthz")
        assert down.status_code == 503 and down.json()["database"] == "unreachable"
        assert not world.db.exists()  # the check made no new, empty database in its place
    finally:
        moved.rename(world.db)
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_serve_refuses_to_start_without_its_secret(tmp_path, http_server, smtp_server):
    world, _ = web_world(tmp_path, http_server, smtp_server)
    world.env.pop(SECRET_ENV)
    result = world.run("serve")
    assert result.returncode == 2 and SECRET_ENV in result.stderr


def test_serve_and_the_daemon_together(tmp_path, http_server, smtp_server):
    """The daemon applies the config the serve process edited (it watches the file); the suppression
    works before that already. Bob gets every new paper all along."""
    world, base = web_world(tmp_path, http_server, smtp_server, every="1s")
    serve = start_serve(world, base)
    daemon = world.start("run")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(daemon.stderr), daemon=True)
    reader.start()
    try:
        wait_for(lambda: recipients(smtp_server, 0) == [ALICE, BOB], daemon)
        url = one_click_url(next(r.message for r in smtp_server.received if r.rcpt_tos == [ALICE]), base)
        assert httpx.post(url, **ONE_CLICK).status_code == 200
        sent = len(smtp_server.received)
        new_papers(http_server, 9)
        wait_for(lambda: recipients(smtp_server, sent) == [BOB], daemon)
        wait_for(lambda: any("config reloaded: 1 sources, 1 subscriptions" in line for line in lines), daemon)
        new_papers(http_server, 12)
        wait_for(lambda: recipients(smtp_server, sent) == [BOB, BOB], daemon)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        reader.join(timeout=10)
        serve_err = stop(serve)
    assert daemon.returncode == 0 and not [line for line in lines if "ERROR" in line], lines
    assert "ERROR" not in serve_err, serve_err
    papers = [m["Subject"] for m in smtp_server.messages if str(m["To"]) == BOB]
    assert len(papers) == 3 and ALICE not in world.config.read_text(encoding="utf-8")
    totals = [re.match(r"(?:\d+ of )?(\d+) new papers", subject) for subject in papers]  # "15 of 39" when capped
    assert all(totals) and sum(int(t.group(1)) for t in totals if t) == 12  # each paper once


def test_the_daemon_heartbeat_shows_in_healthz_and_status_and_goes_when_it_stops(tmp_path, http_server,
                                                                                 smtp_server):
    """`digestbot run` writes a heartbeat row (host, pid) at start and every 30 s; the real serve's
    /healthz and `status` show its age; SIGTERM removes the row."""
    world, base = web_world(tmp_path, http_server, smtp_server)
    serve = start_serve(world, base)
    daemon = world.start("run")

    def beats() -> list[tuple[str, int]]:
        with sqlite3.connect(world.db) as conn:
            return [(host, pid) for host, pid in conn.execute("SELECT host, pid FROM heartbeat")]

    try:
        wait_for(lambda: [pid for _, pid in beats()] == [daemon.pid], daemon)
        [(host, _)] = beats()
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200, health.text
        body = health.json()
        assert 0 <= body["daemon_heartbeat_age_s"] < 60
        assert [(d["host"], d["pid"]) for d in body["daemons"]] == [(host, daemon.pid)]
        status = json.loads(world.cli("status", "--json").stdout)
        assert 0 <= status["daemon_heartbeat_age_s"] < 60
        assert [(d["host"], d["pid"], d["alive"]) for d in status["daemons"]] == [(host, daemon.pid, True)]
        text = world.cli("status").stdout
        # the only daemon polls: it is the poll leader (store/leader.py)
        assert re.search(rf"daemon: alive on {re.escape(host)} \(pid {daemon.pid}, the poll leader\), "
                         rf"last heartbeat \d+s ago", text)
    finally:
        daemon.terminate()
        _, daemon_err = daemon.communicate(timeout=30)
    try:
        assert daemon.returncode == 0, daemon_err
        assert beats() == []  # a clean stop removes its row
        after = httpx.get(f"{base}/healthz")
        assert after.status_code == 200  # no daemon is for monitors to judge; the database answers
        assert after.json()["daemon_heartbeat_age_s"] is None and after.json()["daemons"] == []
        assert "no daemon heartbeat" in world.cli("status").stdout
        assert json.loads(world.cli("status", "--json").stdout)["daemons"] == []
    finally:
        stop(serve)


def wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the daemon stopped: {process.communicate()[1]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
