"""The suppression list on real SQLite files: a reader who left gets nothing more of the subscription,
whatever is queued and whatever the config says, until they undo it."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import select
from test_ledger import NOW, seed, url  # noqa: F401  (url: the fixture)

from digestbot.models import Match, Paper
from digestbot.store import DeliveryStatus, DigestStatus, Ledger, Store
from digestbot.store.tables import DeliveryRow


def statuses(store: Store) -> dict[str, DigestStatus]:
    return {d.target: d.status for d in store.digests()}


def delivery_statuses(store: Store) -> dict[str, set[str]]:
    with store.read() as s:
        rows = s.exec(select(DeliveryRow)).all()
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row.target, set()).add(row.status)
    return found


def test_suppress_cancels_the_targets_queued_digests_and_waiting_deliveries_only(url):  # noqa: F811
    store = Store(url)
    seed(store, 2)  # t0 and t1 each have a pending digest
    with store.write() as w:  # and a second paper waiting for the next period
        [(paper_id, paper)] = w.record_papers("src", [Paper(title="Another paper", arxiv_id="2411.00002")], NOW)
        w.record_matches([(paper_id, Match("sub", paper))],
                         {"sub": [("email", "t0@example.org"), ("email", "t1@example.org")]}, NOW)
    assert store.suppress("sub", "t0@example.org", NOW) == 1
    assert statuses(store) == {"t0@example.org": DigestStatus.CANCELLED, "t1@example.org": DigestStatus.PENDING}
    assert delivery_statuses(store) == {"t0@example.org": {DeliveryStatus.CANCELLED},
                                        "t1@example.org": {DeliveryStatus.PENDING}}
    assert store.pending_targets("sub") == [("email", "t1@example.org", NOW)]
    assert store.suppressed("sub") == {"t0@example.org"} and store.suppressed("other") == set()
    # A cancelled digest is no active digest: senders never claim it, and the counts leave it out.
    assert [row.target for row in Ledger(store).claim_batch(NOW + timedelta(hours=1))] == ["t1@example.org"]
    assert Ledger(store).counts()["email"].pending == 0


def test_suppress_is_idempotent_and_keeps_the_first_time(url):  # noqa: F811
    store = Store(url)
    seed(store, 1)
    assert store.suppress("sub", "t0@example.org", NOW) == 1
    assert store.suppress("sub", "t0@example.org", NOW + timedelta(days=1)) == 0
    assert store.suppressed("sub") == {"t0@example.org"}


def test_a_digest_being_sent_is_not_cancelled_by_suppress_but_by_the_sender_that_holds_it(url):  # noqa: F811
    store = Store(url)
    [digest_id] = seed(store, 1)
    ledger = Ledger(store)
    [claim] = ledger.claim_batch(NOW)
    store.suppress("sub", "t0@example.org", NOW)
    assert statuses(store) == {"t0@example.org": DigestStatus.SENDING}
    ledger.cancel([claim.id])
    assert store.digest(digest_id).status == DigestStatus.CANCELLED
    assert delivery_statuses(store) == {"t0@example.org": {DeliveryStatus.CANCELLED}}


def test_unsuppress_lets_new_mail_through_and_says_whether_there_was_anything_to_undo(url):  # noqa: F811
    store = Store(url)
    seed(store, 1)
    store.suppress("sub", "t0@example.org", NOW)
    assert store.unsuppress("sub", "t0@example.org") is True
    assert store.unsuppress("sub", "t0@example.org") is False
    assert store.suppressed("sub") == set()
    assert statuses(store) == {"t0@example.org": DigestStatus.CANCELLED}  # what was cancelled stays so
