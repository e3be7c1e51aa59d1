"""Subscribe requests in the store (double opt-in, web/subscribe.py): the per-address limit, one mail for
a request sent several times at once, claims so that a mail goes once, idempotent confirmation. On SQLite
here; test_confirmations_postgres.py runs the concurrent case on PostgreSQL."""
from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from digestbot.store import ConfirmationStatus, Store

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
ALICE = "alice@example.org"


def sqlite_store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'bot.db'}")
    store.create_tables()
    return store


def test_at_most_per_day_requests_per_address_and_no_duplicate_within_ten_minutes(tmp_path):
    store = sqlite_store(tmp_path)
    first = store.request_confirmation("lab", "", ALICE, NOW, 3)
    assert first is not None and first.status == ConfirmationStatus.PENDING and first.subscription_id == "lab"
    assert store.request_confirmation("lab", "", ALICE, NOW + timedelta(minutes=9), 3) is None  # the same, waiting
    assert store.request_confirmation("lab", "", "bob@example.org", NOW, 3) is not None  # another address
    assert store.request_confirmation("", "llm", ALICE, NOW + timedelta(minutes=1), 3) is not None  # another ask
    assert store.request_confirmation("lab", "", ALICE, NOW + timedelta(minutes=11), 3) is not None
    assert store.request_confirmation("news", "", ALICE, NOW + timedelta(minutes=12), 3) is None  # 3 today
    assert store.request_confirmation("news", "", ALICE, NOW + timedelta(days=1, minutes=1), 3) is not None


def test_concurrent_identical_requests_record_one(tmp_path):
    store = sqlite_store(tmp_path)
    assert_one_of_concurrent_requests(store, lambda: Store(store.url))


def assert_one_of_concurrent_requests(store: Store, another) -> None:
    got: list[object] = []
    errors: list[Exception] = []
    start = threading.Barrier(6)

    def ask() -> None:
        own = another()
        try:
            start.wait()
            got.append(own.request_confirmation("lab", "", ALICE, NOW, 3))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len([g for g in got if g is not None]) == 1


def test_a_request_is_claimed_once_sent_once_and_confirmed_idempotently(tmp_path):
    store = sqlite_store(tmp_path)
    request = store.request_confirmation("lab", "", ALICE, NOW, 3)
    assert request is not None
    [claimed] = store.claim_confirmations(NOW, LEASE, ids=[request.id])
    assert claimed.status == ConfirmationStatus.SENDING
    assert store.claim_confirmations(NOW, LEASE, ids=[request.id]) == []  # held by the first sender
    assert store.claim_confirmations(NOW, LEASE, since=NOW - timedelta(hours=48)) == []
    # A sender that died: after its lease, the next start takes it over.
    [again] = store.claim_confirmations(NOW + LEASE + timedelta(seconds=1), LEASE, since=NOW - timedelta(hours=48))
    assert again.id == request.id
    store.confirmation_sent(request.id, NOW + LEASE, sent=True)
    sent = store.confirmation(request.id)
    assert sent is not None and sent.status == ConfirmationStatus.SENT and sent.sent_at == NOW + LEASE
    assert store.claim_confirmations(NOW + timedelta(days=1), LEASE, since=NOW - timedelta(hours=48)) == []
    confirmed = store.confirm(request.id, NOW + timedelta(hours=1))
    assert confirmed is not None and confirmed.confirmed_at == NOW + timedelta(hours=1)
    twice = store.confirm(request.id, NOW + timedelta(hours=2))
    assert twice is not None and twice.confirmed_at == NOW + timedelta(hours=1)
    assert store.confirm(request.id + 100, NOW) is None


def test_a_mail_that_failed_waits_for_the_next_claim_and_old_requests_are_dropped(tmp_path):
    store = sqlite_store(tmp_path)
    request = store.request_confirmation("lab", "", ALICE, NOW, 3)
    assert request is not None
    store.claim_confirmations(NOW, LEASE, ids=[request.id])
    store.confirmation_sent(request.id, NOW, sent=False)
    assert [r.id for r in store.claim_confirmations(NOW, LEASE, since=NOW - timedelta(hours=48))] == [request.id]
    assert store.drop_confirmations(NOW) == 0
    assert store.drop_confirmations(NOW + timedelta(hours=48, seconds=1)) == 1
    assert store.confirmation(request.id) is None
