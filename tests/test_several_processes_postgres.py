"""Several digestbot processes on one real PostgreSQL (the server of test_ledger_postgres; skipped without it):
the poll leader is a session advisory lock (store/leader.py).

- two `run --once` started together: one polls and opens, the other waits and finds the polling done; both
  send, each digest once, the source polled once, both exit 0, and no duplicate-key error;
- two daemons, a slow SMTP relay, the leader SIGKILLed in the middle of its send pass: nothing is lost, at
  most the one message in flight goes twice, and the survivor takes over polling (papers listed after the
  kill reach every reader through it).
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from delivery_world import HookedSmtpServer
from fixtures import daily_items
from sqlalchemy import create_engine
from test_ledger_postgres import pg_url  # noqa: F401  (the fixture)
from test_several_processes import (
    READERS,
    Running,
    check_two_runs,
    digestbot,
    hold_listing_until,
    listing_requests,
    polls_of,
    serve,
    two_runs_together,
    write_config,
)

from digestbot.errors import StoreError
from digestbot.models import Paper
from digestbot.store import Store

pytest.importorskip("psycopg")


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:  # noqa: F811
    """A new, empty database of its own on the test server."""
    name = f"digestbot_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def test_two_run_once_on_one_postgresql_poll_once_send_each_digest_once_and_both_exit_0(tmp_path, http_server,
                                                                                         smtp_server, database):
    items = daily_items(30)
    serve(http_server, items[:20])
    path = write_config(tmp_path, database, http_server.url, smtp_server.port)
    first = digestbot(path, "run", "--once", "--no-send")
    assert first.returncode == 0, first.stderr
    before, requests = polls_of(path), listing_requests(http_server)
    serve(http_server, items[:30])
    results = two_runs_together(path, http_server)
    check_two_runs(results, smtp_server.received, before, polls_of(path))
    assert all("duplicate key" not in err and "another process wrote the same rows" not in err for _, _, err in results)
    together = listing_requests(http_server) - requests
    alone = digestbot(path, "run", "--once")
    assert alone.returncode == 0 and polls_of(path) == before + 2
    assert together == listing_requests(http_server) - requests - together


def titles(items: list[dict]) -> set[str]:
    return {" ".join(i["paper"]["title"].split()) for i in items}


def test_two_daemons_one_killed_mid_pass_nothing_lost_and_the_other_takes_over_polling(tmp_path, http_server,
                                                                                       database):
    items = daily_items(40)
    serve(http_server, items[:10])
    leader: Running | None = None

    def kill_the_leader(accepted: int) -> None:  # in the relay, before the sender hears 250 for this one
        if accepted == 5 and leader is not None:
            os.kill(leader.process.pid, signal.SIGKILL)

    with HookedSmtpServer(delay=0.2, after_accept=kill_the_leader) as smtp:
        path = write_config(tmp_path, database, http_server.url, smtp.port, send_lease=3)
        setup = digestbot(path, "run", "--once", "--no-send")  # the installation; its listing is history
        assert setup.returncode == 0, setup.stderr
        serve(http_server, items[:25])  # 15 new papers: one digest for each reader
        released = threading.Event()
        hold_listing_until(http_server, released)  # the leader's first poll waits until the other daemon runs
        leader = Running(path, "run")
        leader.wait_for("this daemon leads", timeout=60)
        follower = Running(path, "run", on_line=lambda line: released.set() if "another digestbot process leads"
                           in line else None)
        try:
            follower.wait_for("another digestbot process leads (digestbot daemon, pid "
                              f"{leader.process.pid}", timeout=60)
            smtp.wait_for(5, timeout=90)
            leader.process.wait(30)
            assert leader.process.returncode == -signal.SIGKILL
            killed_at = time.monotonic()
            serve(http_server, items)  # 15 more papers, listed after the leader died
            follower.wait_for("took over polling from a stopped leader", timeout=60)
            assert time.monotonic() - killed_at < 60
            deadline = time.monotonic() + 90
            while len({m.message["Message-ID"] for m in smtp.received}) < 2 * READERS:
                assert follower.process.poll() is None, follower.log
                assert time.monotonic() < deadline, f"{len(smtp.received)} messages:\n{follower.log}"
                time.sleep(0.2)
            time.sleep(1)  # a duplicate beyond the one in flight would come now
            status = json.loads(digestbot(path, "status", "--json").stdout)
            leading = {(d["pid"], d["leader"]) for d in status["daemons"]}
            assert (follower.process.pid, True) in leading and (leader.process.pid, False) in leading
            follower.process.send_signal(signal.SIGTERM)
            code, _, log = follower.finish(timeout=60)
        finally:
            released.set()
            leader.kill()
            follower.kill()
    assert code == 0, log
    before_takeover = log[:log.index("took over polling")]
    assert "papers listed" not in before_takeover  # a follower's poll jobs do not poll
    assert "hf: 40 papers listed, 15 new" in log  # the survivor polled what came after the kill
    by_reader: dict[str, list] = defaultdict(list)
    for received in smtp.received:
        [reader] = received.rcpt_tos
        by_reader[reader].append(received.message)
    assert sorted(by_reader) == sorted(f"reader{n}@example.org" for n in range(READERS))
    ids = Counter(m.message["Message-ID"] for m in smtp.received)
    assert sum(ids.values()) - len(ids) <= 1, ids.most_common(3)  # at most the message in flight, twice
    later = titles(items[25:])
    for reader, messages in by_reader.items():
        bodies = [m.get_body(preferencelist=("plain",)).get_content() for m in messages]
        assert len({m["Message-ID"] for m in messages}) == 2, reader  # the digest of each poll: none lost
        assert sum(any(t in " ".join(b.split()) for t in later) for b in bodies) >= 1, reader


def test_two_uncoordinated_writers_of_the_same_papers_get_a_plain_conflict_not_a_damaged_database(database):
    """What two pollers that do not take turns (a digestbot of an older version beside this one) meet on
    PostgreSQL: the second insert of the same paper fails on the unique key. It is explained as such."""
    first, second = Store(database), Store(database)
    first.create_tables()
    now = datetime(2026, 11, 20, tzinfo=UTC)
    paper = Paper(title="One paper", abstract="", arxiv_id="2411.00001")
    failures: list[str] = []
    inserted = threading.Event()

    def later_writer() -> None:
        inserted.wait(30)
        try:
            with second.write() as w:  # waits on the first transaction's uncommitted row, then conflicts
                w.record_papers("hf", [Paper(title="One paper", abstract="", arxiv_id="2411.00001")], now)
        except StoreError as exc:
            failures.append(str(exc))

    thread = threading.Thread(target=later_writer)
    thread.start()
    with first.write() as w:
        assert len(w.record_papers("hf", [paper], now)) == 1
        inserted.set()
        time.sleep(1.0)  # the other transaction is now waiting on this row
    thread.join(30)
    [message] = failures
    assert "another process wrote the same rows at the same moment" in message and "nothing is lost" in message
    assert "backup" not in message and "not a digestbot database" not in message and "damaged" not in message
    assert first.count_papers() == 1
    first.close()
    second.close()
