"""No duplicate without a crash, however slow the send (issue 16, point 1).

A claim is renewed while its sender works through the batch, and measured from the moment of the
claim; `sent`/`failed` are fenced on the claim's token; one send pass at a time per process. Real
SMTP server on loopback (a relay that answers each DATA after a second), real SQLite files, the
real CLI in subprocesses where another process is the point.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from datetime import timedelta

from delivery_world import HookedSmtpServer, init, make_world
from test_ledger import NOW, seed

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.store import Store, utcnow
from digestbot.store.ledger import Ledger


def received_by(smtp) -> Counter:
    return Counter(r for received in smtp.received for r in received.rcpt_tos)


def test_a_second_run_started_after_the_first_claims_lease_ran_out_sends_nothing_twice(tmp_path, http_server):
    """The tester's case: `send_lease = 4`, a second `run --once` 6 s into a 40-digest pass sent 21
    twice. Here the pass (16 digests, 1 s each) outlasts the 8 s lease of its first claim, and the
    second run starts after 10 messages: the first run's claims must still be alive."""
    recipients = [f"s{i}@example.org" for i in range(16)]
    with HookedSmtpServer(delay=1.0) as smtp:
        world = make_world(tmp_path, http_server, smtp_port=smtp.port, emails=recipients, send_lease=8)
        init(world)
        first = world.start("run", "--once")
        smtp.wait_for(10)  # the first claim's lease (8 s) has run out by now
        second = world.start("run", "--once")
        outputs = [process.communicate(timeout=180) for process in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, outputs
    assert received_by(smtp) == Counter(recipients)  # every recipient exactly once
    assert [r["status"] for r in world.rows()] == ["sent"] * len(recipients)


def _config(tmp_path, port: int, recipients: list[str], lease: float, busy_timeout: float = 10) -> config_module.Config:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[bot]
database = "sqlite:///{tmp_path}/state.db"
send_lease = {lease}
busy_timeout = {busy_timeout}

[email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Paper Digest <digest@example.org>"

[[subscriptions]]
name = "everything"
query = "inference"
email = {recipients!r}
schedule = "instant"
""".replace("'", '"'))
    return config_module.load(path)


def _seed_papers(ctx: pipeline.Context, arxiv_id: str = "2411.00001") -> None:
    from digestbot.models import Match, Paper

    [sub] = ctx.config.subscriptions
    with ctx.store.write() as w:
        [(paper_id, paper)] = w.record_papers("test", [Paper(title=f"Fast inference {arxiv_id}", arxiv_id=arxiv_id)],
                                              NOW)
        w.record_matches([(paper_id, Match(sub.id, paper, 1.0))], pipeline._all_targets(ctx.config), NOW)


def test_two_jobs_of_one_daemon_sending_at_once_take_turns_and_send_nothing_twice(tmp_path):
    """The daemon runs its jobs in threads: a poll job's send and `send:retries` may start while a
    slow pass is running. Here the second starts after the first claim's lease ran out, with a new
    paper matched meanwhile: it waits for the first pass, then sends the new digests (not skipped)."""
    recipients = [f"d{i}@example.org" for i in range(6)]
    with HookedSmtpServer(delay=1.0) as smtp:
        config = _config(tmp_path, smtp.port, recipients, lease=3)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)
        results: dict[str, pipeline.SendResult] = {}
        first = threading.Thread(target=lambda: results.update(first=pipeline.send_due(ctx, utcnow())))
        first.start()
        smtp.wait_for(4)  # 4 s into the pass: its first claim (3 s) has run out
        _seed_papers(ctx, "2411.00002")  # a poll job found a new paper: new instant digests
        second = threading.Thread(target=lambda: results.update(second=pipeline.send_due(ctx, utcnow())))
        second.start()
        first.join(timeout=120)
        second.join(timeout=120)
    digest_of = {row.message_id: row.id for row in Ledger(ctx.store).digests("sent")}
    order = [digest_of[m["Message-ID"]] for m in smtp.messages]
    assert len(order) == len(set(order)) == 2 * len(recipients)  # nothing twice, nothing missing
    assert order == sorted(order)  # one pass after the other: the first pass's digests all came first
    assert len(results["first"].sent) == len(results["second"].sent) == len(recipients)


def test_one_exchange_slower_than_the_lease_keeps_its_claim(tmp_path):
    """A relay may take minutes to answer DATA (RFC 5321 allows ten): renewing between digests is
    not enough, the claim is kept alive while the exchange runs."""
    with HookedSmtpServer(delay=10.0) as smtp:
        config = _config(tmp_path, smtp.port, ["slow@example.org"], lease=4)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)
        results: list[pipeline.SendResult] = []
        sender = threading.Thread(target=lambda: results.append(pipeline.send_due(ctx, utcnow())))
        sender.start()
        smtp.wait_for(1, started=True)
        time.sleep(6)  # the claim's first lease (4 s) has run out; the server still has the message
        other = Ledger(Store(config.database_url))  # another process's sender
        taken = other.claim_batch(utcnow())
        sender.join(timeout=120)
    assert taken == []
    assert received_by(smtp) == Counter(["slow@example.org"]) and len(results[0].sent) == 1


def test_a_pass_renews_its_claims_while_it_works(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.create_tables()
    first, second = seed(store, 2)
    clock = [NOW]
    ledger = Ledger(store, lease=timedelta(minutes=10), clock=lambda: clock[0])
    assert [r.id for r in ledger.claim_batch(NOW)] == [first, second]
    clock[0] = NOW + timedelta(minutes=4)
    assert ledger.hold(first)  # more than half of the lease left: nothing to do
    clock[0] = NOW + timedelta(minutes=6)
    assert ledger.hold(first)  # less than half: both claims renewed to 16 minutes
    ledger.sent(first, "<first@x>", clock[0])
    other = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW + timedelta(minutes=12))
    assert other.claim_batch(NOW + timedelta(minutes=12)) == []  # the first claim alone would have run out
    assert ledger.hold(second)
    assert [r.id for r in other.claim_batch(NOW + timedelta(minutes=17))] == [second]  # as if it had died
    clock[0] = NOW + timedelta(minutes=17)
    assert not ledger.hold(second)  # taken over: this sender must not send it any more


def test_a_sender_whose_lease_ran_out_never_overwrites_the_sender_that_took_over(tmp_path, caplog):
    store = Store(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.create_tables()
    a_id, b_id = seed(store, 2)
    slow = Ledger(store, lease=timedelta(minutes=1), clock=lambda: NOW)
    assert len(slow.claim_batch(NOW)) == 2
    later = NOW + timedelta(minutes=2)  # the slow sender stalled past its lease
    quick = Ledger(store, lease=timedelta(minutes=1), clock=lambda: later)
    a, b = quick.claim_batch(later)
    quick.sent(a.id, "<quick-a@x>", later)  # recorded before the slow sender's record ...
    with caplog.at_level(logging.WARNING, logger="digestbot.store.ledger"):
        slow.sent(a_id, "<slow-a@x>", NOW)
        slow.sent(b_id, "<slow-b@x>", NOW)  # ... and after it (the quick one is still sending)
        slow.failed(b, "451 later", NOW, permanent=False)
    quick.sent(b.id, "<quick-b@x>", later)
    rows = {row.id: row for row in quick.digests("sent")}
    assert (rows[a_id].message_id, rows[b_id].message_id) == ("<quick-a@x>", "<quick-b@x>")
    assert rows[a_id].attempts == rows[b_id].attempts == 1 and rows[b_id].last_error is None
    assert slow.lost == {a_id, b_id} and quick.lost == set()
    warnings = [r.getMessage() for r in caplog.records]
    assert f"digest {a_id} was taken over by another sender after its lease ran out; it may arrive twice, " \
           f"with the same Message-ID" in warnings[0]


def test_a_database_from_an_older_version_gets_the_claim_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    store.create_tables()
    [digest_id] = seed(store, 1)
    store.close()
    with sqlite3.connect(tmp_path / "old.db") as db:  # as an older digestbot made it
        db.execute("ALTER TABLE digest DROP COLUMN claimed_by")
        db.execute("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    reopened = Store.open_existing(url)
    ledger = Ledger(reopened, clock=lambda: NOW)
    assert [r.id for r in ledger.claim_batch(NOW)] == [digest_id]
    ledger.sent(digest_id, "<m@x>", NOW)
    assert ledger.get(digest_id).status == "sent" and ledger.lost == set()
    Store.open_existing(url).close()  # opening it again finds the column there
