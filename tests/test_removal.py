"""Removing means removed (issue 20, point 3): what is queued for a target or subscription that left the
config is cancelled (kept, marked, said once); `retry --failed` sends a failed digest's papers to the
subscription's current targets; `digestbot discard` drops what an admin does not want sent.

Real components: the CLI in subprocesses (and a real daemon), a loopback listing and SMTP server.
"""
from __future__ import annotations

import json
import signal
import time

from delivery_world import init, make_world

ALICE, BOB, WRONG, RIGHT = "alice@example.org", "bob@example.org", "carl@exmaple.org", "carl@example.org"


def set_emails(world, emails: list[str]) -> None:
    text = world.config.read_text()
    start = text.index("email = ", text.index("[[subscriptions]]"))
    end = text.index("\n", start)
    world.config.write_text(text[:start] + f"email = {json.dumps(emails)}" + text[end:])


def by_target(world) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in world.rows():
        found.setdefault(row["target"], []).append(row["status"])
    return found


def test_an_address_removed_from_a_subscription_has_its_queued_digest_cancelled_once(tmp_path, http_server,
                                                                                      smtp_server):
    smtp_server.fail_rcpt[BOB] = "450 4.2.1 mailbox busy, try later"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE, BOB])
    init(world)
    first = world.run("run", "--once")
    assert first.returncode == 1 and by_target(world) == {ALICE: ["sent"], BOB: ["pending"]}  # Bob's is retrying
    set_emails(world, [ALICE])
    smtp_server.fail_rcpt.clear()
    second = world.run("run", "--once")
    assert second.returncode == 0, second.stderr
    assert f"cancelled 1 queued for 'everything' to {BOB} (email): no longer in the config" in second.stdout
    assert by_target(world) == {ALICE: ["sent"], BOB: ["cancelled"]}  # kept, marked
    assert [r for r in smtp_server.rcpts if BOB in r] == []
    [row] = [r for r in world.rows() if r["target"] == BOB]
    assert "left the subscription in the config" in row["last_error"]
    third = world.run("run", "--once")
    assert "cancelled" not in third.stdout  # said once


def test_a_removed_subscription_has_its_digests_cancelled_not_left_waiting(tmp_path, http_server, smtp_server):
    lab = '\n[[subscriptions]]\nname = "Lab"\nemail = ["lab@example.org"]\nschedule = "instant"\n'
    smtp_server.fail_rcpt["lab@example.org"] = "450 4.2.1 try later"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE], extra_sub=lab)
    init(world)
    world.run("run", "--once")
    assert by_target(world)["lab@example.org"] == ["pending"]
    world.config.write_text(world.config.read_text().replace(lab, "\n"))
    again = world.run("run", "--once")
    assert again.returncode == 0, again.stderr
    assert "cancelled 1 queued for 'lab' to lab@example.org" in again.stdout
    assert by_target(world)["lab@example.org"] == ["cancelled"]
    assert "waits forever" not in again.stderr


def test_the_daemon_cancels_a_removed_address_after_the_edit_and_logs_it_once(tmp_path, http_server, smtp_server):
    smtp_server.fail_rcpt[BOB] = "450 4.2.1 try later"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE, BOB])
    init(world)
    daemon = world.start("run")
    try:
        wait_until(lambda: by_target(world).get(BOB) == ["pending"] and by_target(world).get(ALICE) == ["sent"])
        smtp_server.fail_rcpt.clear()
        set_emails(world, [ALICE])  # the daemon reloads it within seconds, polls again and sends
        wait_until(lambda: by_target(world).get(BOB) == ["cancelled"])
        world.config.write_text(world.config.read_text() + "\n# another edit: another reload and send pass\n")
        time.sleep(8)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert err.count("config reloaded") == 2, err
    assert err.count(f"of 'everything' to {BOB} (email): no longer in the config") == 1, err
    assert [r for r in smtp_server.rcpts if BOB in r] == []


def test_retry_failed_sends_the_papers_to_the_fixed_address(tmp_path, http_server, smtp_server):
    smtp_server.fail_rcpt[WRONG] = "550 5.1.1 no such user"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[WRONG])
    init(world)
    assert world.run("run", "--once").returncode == 1
    assert by_target(world) == {WRONG: ["failed"]}
    set_emails(world, [RIGHT])  # the typo fixed
    retried = world.cli("retry", "--failed")
    assert retried.returncode == 0, retried.stderr
    assert "1 failed digests were for targets no longer in the config" in retried.stdout
    sent = world.run("run", "--once")
    assert sent.returncode == 0, sent.stderr
    assert smtp_server.rcpts == [[RIGHT]]
    assert smtp_server.messages[0]["To"] == RIGHT
    assert by_target(world) == {WRONG: ["cancelled"], RIGHT: ["sent"]}
    assert world.run("run", "--once").returncode == 0 and len(smtp_server.received) == 1  # once


def test_discard_drops_what_an_admin_does_not_want_sent(tmp_path, http_server, smtp_server):
    smtp_server.fail_rcpt[ALICE] = "450 4.2.1 try later"
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[ALICE, BOB])
    init(world)
    world.run("run", "--once")
    assert by_target(world) == {ALICE: ["pending"], BOB: ["sent"]}
    asked = world.cli("discard", "--target", ALICE)  # not a terminal: it says how many, and asks for --yes
    assert asked.returncode == 2 and "would discard 1 digests" in asked.stderr and "--yes" in asked.stderr
    assert by_target(world)[ALICE] == ["pending"]
    assert world.cli("discard").returncode == 2  # nothing selected: refused, not "everything"
    done = world.cli("discard", "--subscription", "everything", "--target", ALICE, "--yes")
    assert done.returncode == 0 and "discarded 1 digests" in done.stdout
    smtp_server.fail_rcpt.clear()
    world.cli("retry", "--failed")
    world.run("run", "--once")
    assert by_target(world) == {ALICE: ["cancelled"], BOB: ["sent"]}
    assert [r for r in smtp_server.rcpts if ALICE in r] == []
    [digest_id] = [r["id"] for r in world.rows() if r["target"] == BOB]
    assert "nothing to discard" in world.cli("discard", "--id", str(digest_id), "--yes").stdout  # sent: kept


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
