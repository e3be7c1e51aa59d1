"""The ledger on real SQLite files: atomic claims, leases, backoff, permanent failures, retry, counts."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from digestbot.models import Match, Paper
from digestbot.store import DeliveryStatus, DigestStatus, Store
from digestbot.store.ledger import MAX_ATTEMPTS, RETRY_FIRST, Ledger

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Store(url).create_tables()
    return url


def seed(store: Store, targets: int, channel: str = "email") -> list[int]:
    """One paper matched by one subscription with `targets` recipients; one digest each."""
    with store.write() as w:
        [(paper_id, paper)] = w.record_papers("src", [Paper(title="A paper", arxiv_id="2411.00001")], NOW)
        w.record_matches([(paper_id, Match("sub", paper))],
                         {"sub": [(channel, f"t{i}@example.org") for i in range(targets)]}, NOW)
    ids = [store.open_digest("sub", channel, f"t{i}@example.org", "p1", NOW) for i in range(targets)]
    assert all(ids)
    return ids


def test_poll_writes_papers_matches_and_ledger_rows_in_one_transaction(url):
    store = Store(url)
    with pytest.raises(RuntimeError):
        with store.write() as w:
            [(paper_id, paper)] = w.record_papers("src", [Paper(title="A paper")], NOW)
            w.record_matches([(paper_id, Match("sub", paper))], {"sub": [("email", "a@example.org")]}, NOW)
            raise RuntimeError("crash before the commit")
    assert store.count_papers() == 0 and store.pending_targets("sub") == []  # all or nothing
    seed(store, 2)
    assert store.count_papers() == 1
    assert [d.status for d in Ledger(store).digests("pending")] == ["pending", "pending"]


def test_two_senders_never_claim_the_same_digest(url):
    ids = seed(Store(url), 60)
    claimed: list[list[int]] = []

    def sender() -> None:
        ledger, mine = Ledger(Store(url)), []  # its own engine: like another process
        while batch := ledger.claim_batch(NOW, limit=7):
            mine += [row.id for row in batch]
        claimed.append(mine)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in claimed for i in mine]
    assert sorted(every) == sorted(ids)  # each claimed once, by exactly one sender
    assert not Ledger(Store(url)).claim(ids[0], NOW)


def test_a_digest_left_sending_by_a_crash_is_due_again_after_its_lease(url):
    store = Store(url)
    [digest_id] = seed(store, 1)
    ledger = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW)  # a lease runs from the claim
    assert [r.id for r in ledger.claim_batch(NOW)] == [digest_id]
    # the sender dies here: nobody marks it sent or failed; the next run's sender has a ledger of its own
    later = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW)
    assert later.claim_batch(NOW + timedelta(minutes=9)) == []
    assert [r.id for r in later.claim_batch(NOW + timedelta(minutes=11))] == [digest_id]


def test_a_ledger_never_claims_again_what_it_still_holds_even_past_the_lease(url):
    """A pass whose `now` is past the lease sees its own claims in flight as due: they are not taken twice."""
    store = Store(url)
    first, second = seed(store, 2)
    ledger = Ledger(store, lease=timedelta(minutes=10), clock=lambda: NOW)
    assert [r.id for r in ledger.claim_batch(NOW, limit=1)] == [first]
    assert [r.id for r in ledger.claim_batch(NOW + timedelta(hours=1))] == [second]  # not `first` again
    assert ledger.claim_batch(NOW + timedelta(hours=1)) == []
    ledger.release([first], next_try=NOW)
    assert [r.id for r in ledger.claim_batch(NOW + timedelta(hours=1))] == [first]  # given back: due again


def test_a_transient_failure_stays_pending_with_backoff_and_a_permanent_one_fails(url):
    store = Store(url)
    soft_id, hard_id = seed(store, 2)
    ledger = Ledger(store)
    soft, hard = ledger.claim_batch(NOW)
    retry_at = ledger.failed(soft, "451 try later", NOW, permanent=False)
    assert RETRY_FIRST * 0.75 <= retry_at - NOW <= RETRY_FIRST * 1.25  # exponential, with jitter
    assert ledger.failed(hard, "550 no such user", NOW, permanent=True) is None
    row = ledger.get(soft_id)
    assert (row.status, row.attempts, row.last_error) == ("pending", 1, "451 try later")
    assert ledger.claim_batch(NOW + timedelta(seconds=30)) == []  # not before its next try
    [again] = ledger.claim_batch(NOW + timedelta(minutes=2))
    assert again.id == soft_id
    second = ledger.failed(again, "451 try later", NOW, permanent=False)
    assert second - NOW >= RETRY_FIRST * 2 * 0.75  # the delay grows
    assert ledger.get(hard_id).status == "failed"
    counts = ledger.counts()["email"]
    assert counts.failed == 1


def test_permanent_failures_are_never_claimed_again_and_retry_failed_revives_them(url):
    store = Store(url)
    [digest_id] = seed(store, 1)
    ledger = Ledger(store)
    [row] = ledger.claim_batch(NOW)
    ledger.failed(row, "channel_not_found", NOW, permanent=True)
    assert ledger.claim_batch(NOW + timedelta(days=365)) == []
    assert ledger.retry_now(NOW) == 0
    assert ledger.retry_now(NOW, failed=True) == 1
    assert [r.id for r in ledger.claim_batch(NOW)] == [digest_id]


def test_too_many_transient_failures_become_failed(url):
    store = Store(url)
    [digest_id] = seed(store, 1)
    ledger = Ledger(store)
    when = NOW
    for _ in range(MAX_ATTEMPTS):
        [row] = ledger.claim_batch(when)
        when = ledger.failed(row, "421 busy", when, permanent=False) or when
    row = ledger.get(digest_id)
    assert row.status == "failed" and "gave up after" in row.last_error


def test_retry_makes_pending_due_now_and_sent_is_final(url):
    store = Store(url)
    first, second = seed(store, 2)
    ledger = Ledger(store)
    a, b = ledger.claim_batch(NOW)
    ledger.sent(a.id, "<digest-1@x>", NOW)
    ledger.failed(b, "451", NOW, permanent=False)
    assert ledger.claim_batch(NOW) == []
    assert ledger.retry_now(NOW) == 1
    [again] = ledger.claim_batch(NOW)
    assert again.id == second
    sent = ledger.get(first)
    assert (sent.status, sent.message_id, sent.attempts) == ("sent", "<digest-1@x>", 1)
    counts = ledger.counts()["email"]
    assert (counts.sent, counts.sending) == (1, 1) and counts.oldest_pending is not None


def test_released_digests_are_not_penalised(url):
    store = Store(url)
    [digest_id] = seed(store, 1)
    ledger = Ledger(store)
    ledger.claim_batch(NOW)
    ledger.release([digest_id], next_try=NOW + timedelta(seconds=1))
    row = ledger.get(digest_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert ledger.claim_batch(NOW) == [] and len(ledger.claim_batch(NOW + timedelta(seconds=1))) == 1


def test_sent_on_the_driver_cursor_writes_what_the_orm_writes_and_reports_a_busy_database(url):
    import sqlite3

    from sqlalchemy import update

    from digestbot.errors import StoreError
    from digestbot.store.tables import DeliveryRow, DigestRow

    store = Store(url)
    fast, orm = seed(store, 2)
    ledger = Ledger(store)
    ledger.sent(fast, "<m@x>", NOW)
    with store.write() as w:  # the same record, written by SQLAlchemy the usual way
        w.session.execute(update(DigestRow).where(DigestRow.id == orm).values(
            status=DigestStatus.SENT, sent_at=NOW, message_id="<m@x>", attempts=1, lease_until=None))
        w.session.execute(update(DeliveryRow).where(DeliveryRow.digest_id == orm).values(status=DeliveryStatus.SENT))
    ledger.close()
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    rows = db.execute("SELECT status, message_id, sent_at, attempts, lease_until FROM digest ORDER BY id").fetchall()
    assert rows[0] == rows[1] and rows[0][0] == "sent"  # same text in the file (e.g. no "+00:00" on one)
    assert {s for (s,) in db.execute("SELECT status FROM delivery")} == {"sent"}
    assert ledger.get(fast).sent_at == NOW
    db.execute("BEGIN IMMEDIATE")  # another writer holds the database
    with pytest.raises(StoreError, match="database busy"):  # explained, not a raw driver error
        Ledger(Store(url, busy_timeout=0.1)).sent(fast, "<n@x>", NOW)
    db.execute("ROLLBACK")


def test_open_digests_takes_each_targets_deliveries_once_and_skips_a_period_already_open(url):
    store = Store(url)
    with store.write() as w:
        new = w.record_papers("src", [Paper(title=f"Paper {n}", arxiv_id=f"2411.0000{n}") for n in (1, 2)], NOW)
        w.record_matches([(pid, Match("sub", p)) for pid, p in new],
                         {"sub": [("email", "a@example.org"), ("email", "b@example.org")]}, NOW)
    targets = [("email", "a@example.org"), ("email", "b@example.org"), ("email", "nobody@example.org")]
    a, b, nobody = store.open_digests("sub", targets, "p1", NOW)
    assert a and b and a != b and nobody is None  # nothing waits for the third: no empty digest
    papers = store.digest_papers([a, b])
    assert len(papers[a]) == len(papers[b]) == 2
    assert store.open_digests("sub", targets, "p1", NOW) == [None, None, None]  # the period has its digests
    assert store.pending_targets("sub") == []


def test_open_many_opens_every_subscriptions_digests_set_based_as_open_digests_does(url):
    store = Store(url)
    with store.write() as w:
        new = w.record_papers("src", [Paper(title=f"Paper {n}", arxiv_id=f"2411.0000{n}") for n in (1, 2, 3)], NOW)
        w.record_matches([(pid, Match(sub, p)) for sub in ("s1", "s2") for pid, p in new[:2 if sub == "s1" else 3]],
                         {"s1": [("email", "a@example.org")], "s2": [("email", "b@example.org")]}, NOW)
    assert store.open_digest("s2", "email", "b@example.org", "p1", NOW)  # s2's period is open already
    assert store.waiting_targets() == {"s1": [("email", "a@example.org", NOW)]}
    wanted = [("s1", "email", "a@example.org", "p1", False), ("s2", "email", "b@example.org", "p1", False),
              ("s1", "email", "nobody@example.org", "p1", False), ("s1", "email", "empty-ok@example.org", "p1", True)]
    assert store.open_many(wanted, NOW) == 2  # a's and the allowed empty one; not s2's again, not nobody's
    by_target = {d.target: d for d in store.digests()}
    assert (by_target["a@example.org"].papers, by_target["a@example.org"].status) == (2, DigestStatus.PENDING)
    assert (by_target["b@example.org"].papers, by_target["empty-ok@example.org"].papers) == (3, 0)
    assert by_target["nobody@example.org"].status == DigestStatus.EMPTY
    assert store.waiting_targets() == {} and store.open_many(wanted, NOW) == 0


def test_a_claim_reads_the_index_of_active_digests_not_the_whole_history(url):
    """The claim's SQL must be able to use the partial index (its IN term is what allows it): with
    a long history of sent digests, anything else reads or sorts all of them for every batch."""
    import sqlite3

    from sqlalchemy import event

    store = Store(url)
    seed(store, 2)
    executed: list[tuple[str, tuple]] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, context, many: executed.append((sql, params)))
    Ledger(store).claim_batch(NOW)
    [(sql, params)] = [(q, p) for q, p in executed if q.lstrip().startswith("SELECT digest.id")]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "ix_digest_active" in plan and "TEMP B-TREE" not in plan, plan


def test_a_database_from_an_older_version_gets_todays_indexes_and_keeps_its_rows(url):
    path = url.removeprefix("sqlite:///")
    store = Store(url)
    seed(store, 3)
    store.close()
    import sqlite3

    with sqlite3.connect(path) as db:  # as an older digestbot made it
        db.execute("DROP INDEX ix_digest_active")
        db.execute("DROP INDEX ix_delivery_waiting")
        db.execute("CREATE INDEX ix_digest_status ON digest (status)")
        db.execute("CREATE INDEX ix_delivery_status ON delivery (status)")
        db.execute("DROP TABLE IF EXISTS alembic_version")  # (made before migrations)
    reopened = Store.open_existing(url)
    with sqlite3.connect(path) as db:
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_digest_active", "ix_delivery_waiting"} <= names
    assert not {"ix_digest_status", "ix_delivery_status"} & names
    assert [r.id for r in Ledger(reopened).claim_batch(NOW)] == [1, 2, 3]  # the rows are all there


def test_claims_a_pass_never_finished_are_given_back_when_it_closes(url):
    store = Store(url)
    ids = seed(store, 3)
    stopped = Ledger(store, clock=lambda: NOW)
    first, *_ = stopped.claim_batch(NOW)
    stopped.sent(first.id, "<m1>", NOW)
    stopped.close()  # the pass stopped here (an error): two claims never attempted
    assert [r.id for r in Ledger(store).claim_batch(NOW)] == ids[1:]  # due again now, not after the lease
    assert Ledger(store).get(first.id).status == "sent"


def test_rows_another_process_wrote_first_are_explained_as_such_not_as_damage(url):
    """Two processes polling the same source on PostgreSQL both insert its new rows; the second insert's
    unique-key error must not read as a damaged database to restore from a backup."""
    from digestbot.errors import StoreError

    store = Store(url)
    with store.write() as w:
        [(paper_id, paper)] = w.record_papers("src", [Paper(title="A paper", arxiv_id="2411.00001")], NOW)
        w.record_matches([(paper_id, Match("sub", paper))], {"sub": [("email", "a@example.org")]}, NOW)
    with pytest.raises(StoreError) as caught:
        with store.write() as w:  # what the process that lost the race writes
            w.record_matches([(paper_id, Match("sub", paper))], {"sub": [("email", "a@example.org")]}, NOW)
    assert "another process wrote the same rows" in str(caught.value) and "backup" not in str(caught.value)
    assert len(store.waiting_targets()["sub"]) == 1  # the first write stands


def test_a_poll_matches_and_records_its_papers_slice_by_slice_and_keeps_every_match(tmp_path, http_server,
                                                                                     monkeypatch):
    """Memory bounded by the slice (pipeline.MATCH_SLICE): 45 papers matched 20 at a time give the
    same matches, each recorded once, as one call over all of them."""
    from fixtures import daily_items, poll_context

    from digestbot import pipeline

    http_server.route("/search", daily_items(45, published=datetime.now(UTC)))
    ctx, _ = poll_context(tmp_path, '[[sources]]\nname = "search"\nkind = "hf_search"\n'
                                    f'url = "{http_server.url}/search"\nquery = "inference"\n')
    monkeypatch.setattr(pipeline, "MATCH_SLICE", 20)
    assert ctx.matcher.per_paper
    result = pipeline.poll(ctx, "search", datetime.now(UTC))
    assert result.error is None and result.new == 45
    with ctx.store.read() as s:  # what one call over every paper would have recorded
        from sqlmodel import func, select

        from digestbot.store.tables import MatchRow
        recorded = s.exec(select(func.count()).select_from(MatchRow)).one()
    assert result.matched == recorded == len(ctx.matcher.match([p for p in ctx.store.papers(limit=100)])) > 20
