"""The send side of the ledger (README, "Reliability"): claim digests, record what the server said, retry, count.

A digest row moves  pending -> sending -> sent | pending (retry later) | failed (permanent)  (DigestStatus).

- Claiming is one conditional UPDATE inside a write transaction (BEGIN IMMEDIATE on SQLite); on
  PostgreSQL the candidate rows are selected `FOR UPDATE SKIP LOCKED`, so two senders never get the
  same row and never wait for each other. SQLite ignores FOR UPDATE; the UPDATE's own WHERE (the row
  is still due) is what makes it atomic there.
- A claim is a lease, measured from the moment of the claim (the Ledger's clock), and renewed while
  its sender lives: in the background every third of the lease (`kept_alive`), and before each
  digest when less than half is left (`hold`), so it stays valid however slow the server. A sender
  that dies mid-send leaves the row `sending`; once the lease runs out the row is due again. The
  message may then arrive twice, with the same Message-ID.
- Each Ledger (one send pass) claims with its own token (`claimed_by`); `sent`, `failed`, `release`
  and renewals write only rows that still carry it, so a sender whose lease ran out (a process
  stalled for longer than the lease) never overwrites the sender that took the digest over, and
  does not send a digest it no longer holds.
- `sent` is written, one digest per transaction, only after the server accepted the message: batching
  these commits would widen the duplicate window after a crash from one message to the batch. (The
  SMTP channel runs it while the next message's MAIL command is with the server, and hands that
  message over only afterwards: still one message per connection, see Channel.record.) A `sent` record that
  fails (database busy, disk full) is tried again for a while (`record_budget`): the message is
  already with the server, and an unrecorded digest is sent again by the next run.

- One Ledger serves one send pass and all of its threads (sending.py: the pass's thread claims, a
  sender thread per connection records): each thread writes its `sent` records on a connection of its
  own, the set of held claims is shared under a lock, and on SQLite the ledger's writes take turns on
  a lock of this process (SQLite has one writer at a time anyway; waiting on a lock hands over at once,
  where SQLite's busy handler sleeps 1, 2, 5... ms). A claim never takes a row this ledger still holds
  (`sending` with its token): a pass whose `now` is past the lease would otherwise claim its own
  digests in flight again.

Like the other modules of digestbot.store, this one imports SQLAlchemy; nothing outside the package does.
"""
from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import ColumnElement, Connection, Update, func, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col

from ..errors import StoreError
from .database import Store
from .ledger_sql import CANDIDATES, CLAIM, Claim, SentRecord, SentValues, core, due
from .tables import DeliveryRow, DigestRow
from .values import ACTIVE_DIGESTS, DeliveryStatus, DigestRecord, DigestStatus, as_utc, utcnow
from .writer import Writer

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = timedelta(minutes=1), timedelta(hours=6)
MAX_ATTEMPTS = 12  # about two days of backoff; then the digest is `failed` and shows in `status`
LEASE = timedelta(minutes=10)
RECORD_BUSY_TIMEOUTS = 6  # a failing `sent` record is tried for this many busy timeouts (60 s by default)
RECORD_PAUSE, RECORD_PAUSE_MAX = 0.2, 5.0  # seconds between those tries: growing, capped
STALLED = "this process was stalled, or could not write to the database, for longer than bot.send_lease"


def backoff(attempt: int) -> timedelta:
    """Exponential (1 min, 2, 4, ... capped at 6 h) with +-25% jitter so retries do not stampede."""
    delay: timedelta = min(RETRY_FIRST * 2 ** (max(attempt, 1) - 1), RETRY_MAX)
    return delay * (0.75 + random.random() / 2)


@dataclass
class ChannelCounts:
    """The digests of one ledger channel, by status (`digestbot status`)."""
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    oldest_pending: datetime | None = None


# The statuses ChannelCounts counts, each in the field of its name (an `empty` digest is not counted).
COUNTED = (DigestStatus.PENDING, DigestStatus.SENDING, DigestStatus.SENT, DigestStatus.FAILED)


class Ledger:
    """The digest ledger of one Store; one Ledger per send pass (its claims carry its token)."""

    def __init__(self, store: Store, lease: timedelta = LEASE, *, clock: Callable[[], datetime] = utcnow,
                 record_budget: float | None = None):
        self.store, self.lease, self.clock = store, lease, clock
        self.record_budget = RECORD_BUSY_TIMEOUTS * store.busy_timeout if record_budget is None else record_budget
        self.token = uuid.uuid4().hex
        self.lost: set[int] = set()  # digests another sender took over from this one
        self._held: set[int] = set()  # claimed, not yet recorded: renewed together
        self._expires: datetime | None = None  # when the earliest of their leases runs out
        self._state = threading.Lock()  # guards lost, _held and _expires: the pass's threads share them
        self._writer = threading.Lock() if store.engine.dialect.name == "sqlite" else None  # see `_turn`
        self._local = threading.local()  # each thread's connection for `sent` (`_hot`)
        self._conns: list[Connection] = []  # every thread's, closed by `close`
        self._sent: SentRecord | None = None

    def _turn(self) -> AbstractContextManager[object]:
        """On SQLite, this ledger's threads take turns before they ask for the write lock (module notes)."""
        return self._writer if self._writer is not None else nullcontext()

    @contextmanager
    def _write(self) -> Iterator[Writer]:
        """Store.write, after this ledger's other threads' writes (`_turn`)."""
        with self._turn(), self.store.write() as w:
            yield w

    @contextmanager
    def _hot(self, doing: str) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE) on a connection this thread keeps for the whole send
        pass: a Session and a pool checkout per sent digest cost more than the SQLite commit itself. On
        PostgreSQL the connection autocommits: the `sent` record is one statement (SentRecord)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.store.engine.connect()
            conn.info["write"] = True
            if conn.dialect.name == "postgresql":  # its one statement is its own transaction (SentRecord)
                conn.execution_options(isolation_level="AUTOCOMMIT")
            with self._state:
                self._conns.append(conn)
        with self._turn(), self.store.guarded(doing), conn.begin():
            yield conn

    def close(self) -> None:
        try:
            self._give_back_unfinished()
        finally:
            with self._state:
                conns, self._conns = self._conns, []
            for conn in conns:
                _close(conn)

    def _give_back_unfinished(self) -> None:
        """Claims a pass that stopped early (an error) never finished are due again at once, instead
        of waiting `sending` until their lease runs out; a database too broken to say so leaves that
        to the lease."""
        held = self.held()
        if not held:
            return
        try:
            self.release(sorted(held), next_try=self.clock())
        except StoreError as exc:
            log.warning("%d claimed digests stay `sending` until their lease runs out: %s", len(held), exc)

    def _close_connection(self) -> None:
        """Drop this thread's `sent` connection (a fresh one for the next try)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._state:
                if conn in self._conns:
                    self._conns.remove(conn)
            _close(conn)

    def held(self) -> set[int]:
        """The digests this ledger has claimed and not yet recorded (a copy)."""
        with self._state:
            return set(self._held)

    def _mine(self) -> ColumnElement[bool]:
        """The rows this sender may write: its own claims (and rows nobody ever claimed)."""
        return or_(col(DigestRow.claimed_by) == self.token, col(DigestRow.claimed_by).is_(None))

    def claim_batch(self, now: datetime, limit: int = 100) -> list[Claim]:
        """Take up to `limit` digests due at `now` (oldest first); nobody else gets them while this
        sender renews their lease (`hold`)."""
        with self._write() as w:  # never a row this ledger holds (the SQL's `token`): see the module's notes
            ids = list(core(w, CANDIDATES, {"now": now, "limit": limit, "token": self.token}).scalars())
            if not ids:
                return []
            until = self.clock() + self.lease  # from now, not from the pass's start: never born expired
            claimed = core(w, CLAIM, {"ids": ids, "now": now, "lease_until": until, "token": self.token}).all()
        self._hold_new([row.id for row in claimed], until)
        return sorted((Claim(*row) for row in claimed), key=lambda claim: claim.id)

    def claim(self, digest_id: int, now: datetime) -> bool:
        """Take one digest; False when another sender has it or it is not due."""
        with self._write() as w:
            until = self.clock() + self.lease
            result = core(w, update(DigestRow).where(col(DigestRow.id) == digest_id, due(now))
                                       .values(status=DigestStatus.SENDING, lease_until=until, claimed_by=self.token))
            if result.rowcount != 1:
                return False
        self._hold_new([digest_id], until)
        return True

    def _hold_new(self, ids: list[int], until: datetime) -> None:
        with self._state:
            self._expires = until if not self._held or self._expires is None else min(self._expires, until)
            self._held.update(ids)

    def _drop(self, ids: list[int] | set[int]) -> None:
        with self._state:
            self._held.difference_update(ids)

    def hold(self, digest_id: int) -> bool:
        """Call before sending a claimed digest: renews the claims when less than half their lease
        remains; False when another sender has taken this digest over (do not send it)."""
        with self._state:
            due = digest_id in self._held and self._expires is not None and \
                self._expires - self.clock() < self.lease / 2
        if due:
            self.renew()
        with self._state:
            return digest_id in self._held

    def renew(self) -> None:
        """Extend the lease of every digest this sender still holds, in one fenced UPDATE."""
        held = self.held()
        if not held:
            return
        with self._write() as w:
            until = self.clock() + self.lease
            renewed = core(w, self._renewal(held).values(lease_until=until).returning(col(DigestRow.id)))
            kept = cast(set[int], set(renewed.scalars()))  # ids of rows in the table: never None
        gone = held - kept  # of those renewed; a claim made meanwhile is the claim's own
        for digest_id in sorted(gone):
            log.warning("digest %d was taken over by another sender after its lease ran out; not sending it "
                        "here (%s)", digest_id, STALLED)
        with self._state:
            self._held -= gone
            self._expires = until if self._expires is None else max(self._expires, until)

    @contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew this sender's claims in the background, every third of the lease, while the block
        runs: one exchange slower than the lease (a relay may take minutes to answer DATA) must not
        let another sender take the digest over. `hold` still notices a take-over (a stalled process)."""
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop,), name="digestbot-claims", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()

    def _heartbeat(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease.total_seconds() / 3):
            held = self.held()  # the send pass changes the set meanwhile
            if not held:
                continue
            try:  # its own connection: the pass's connection and its pending record are the pass's
                with self._write() as w:
                    until = self.clock() + self.lease
                    core(w, self._renewal(held).values(lease_until=until))
                with self._state:
                    self._expires = until
            except StoreError as exc:
                log.warning("could not renew the claims of this send pass (%s); trying again", exc)

    def _renewal(self, ids: set[int]) -> Update:
        return update(DigestRow).where(col(DigestRow.id).in_(sorted(ids)),
                                       col(DigestRow.status) == DigestStatus.SENDING,
                                       col(DigestRow.claimed_by) == self.token)

    def release(self, ids: list[int], next_try: datetime) -> None:
        """Give back claimed digests that were not attempted (their channel went down first)."""
        if ids:
            with self._write() as w:
                core(w, update(DigestRow)
                     .where(col(DigestRow.id).in_(ids), col(DigestRow.status) == DigestStatus.SENDING, self._mine())
                     .values(status=DigestStatus.PENDING, lease_until=None, next_try=next_try))
            self._drop(ids)

    def cancel(self, ids: list[int]) -> None:
        """Claimed digests whose reader left meanwhile (Store.suppress): never sent, nor their deliveries."""
        if ids:
            with self._write() as w:
                mine = [digest_id for (digest_id,) in core(w, update(DigestRow).where(
                    col(DigestRow.id).in_(ids), col(DigestRow.status) == DigestStatus.SENDING, self._mine())
                    .values(status=DigestStatus.CANCELLED, lease_until=None).returning(col(DigestRow.id)))]
                if mine:
                    core(w, update(DeliveryRow).where(col(DeliveryRow.digest_id).in_(mine))
                         .values(status=DeliveryStatus.CANCELLED))
            self._drop(ids)

    def sent(self, digest_id: int, server_id: str, now: datetime, *, target: str = "") -> None:
        """The server accepted it: `server_id` is the Message-ID or the Slack ts; `target` names the
        recipient in the error if the record cannot be made."""
        values: SentValues = {"digest": digest_id, "server_id": server_id, "now": now, "token": self.token}
        self._record_sent(values, target)

    def _record_sent(self, values: SentValues, target: str) -> None:
        """Record an accepted message, trying again with growing pauses while the database is busy
        or full: giving up means the next run sends it again, so it is worth a wait."""
        deadline, pause = time.monotonic() + self.record_budget, RECORD_PAUSE
        while True:
            try:
                return self._write_sent(values)
            except StoreError as exc:
                self._close_connection()  # a fresh connection for the next try
                if time.monotonic() + pause > deadline:
                    raise StoreError(_unrecorded(values, target, self.record_budget, exc)) from None
                if pause == RECORD_PAUSE:
                    log.warning("recording digest %d as sent failed (%s); trying again for up to %.0f s",
                                values["digest"], exc, self.record_budget)
                time.sleep(pause)
                pause = min(pause * 2, RECORD_PAUSE_MAX)

    def _write_sent(self, values: SentValues) -> None:
        """The hot path of a send pass: statements compiled once and run on the driver's cursor
        (SQLAlchemy's per-statement bookkeeping cost more than the SQLite commit); one commit."""
        with self._hot("record a sent digest") as conn:
            if self._sent is None:
                self._sent = SentRecord(conn.dialect)
            driver = conn.connection.dbapi_connection
            assert driver is not None  # a connection inside a transaction holds its driver's connection
            cursor = driver.cursor()
            try:
                if not self._sent.run(cursor, values):
                    self._taken_over(values["digest"], "it may arrive twice, with the same Message-ID")
            finally:
                cursor.close()
        self._drop([values["digest"]])

    def _taken_over(self, digest_id: int, consequence: str) -> None:
        log.warning("digest %d was taken over by another sender after its lease ran out; %s (%s)",
                    digest_id, consequence, STALLED)
        with self._state:
            self.lost.add(digest_id)

    def failed(self, row: Claim, error: str, now: datetime, *, permanent: bool) -> datetime | None:
        """Record a failed attempt; the next try time, or None when it will not be retried."""
        attempts = row.attempts + 1
        if permanent or attempts >= MAX_ATTEMPTS:
            reason = error if permanent else f"gave up after {attempts} attempts: {error}"
            self._finish_failed(row.id, last_error=reason, attempts=attempts)
            return None
        retry_at = now + backoff(attempts)
        with self._write() as w:
            n = core(w, update(DigestRow).where(col(DigestRow.id) == row.id, self._mine()).values(
                status=DigestStatus.PENDING, next_try=retry_at, last_error=error, lease_until=None,
                attempts=attempts)).rowcount
        self._written(row.id, n)
        return retry_at

    def _finish_failed(self, digest_id: int, *, last_error: str, attempts: int) -> None:
        """The digest and its deliveries are `failed`: never retried but by `digestbot retry --failed`."""
        with self._write() as w:
            n = core(w, update(DigestRow).where(col(DigestRow.id) == digest_id, self._mine()).values(
                status=DigestStatus.FAILED, lease_until=None, last_error=last_error, attempts=attempts)).rowcount
            if n:
                core(w, update(DeliveryRow).where(col(DeliveryRow.digest_id) == digest_id)
                     .values(status=DeliveryStatus.FAILED))
        self._written(digest_id, n)

    def _written(self, digest_id: int, rowcount: int) -> None:
        self._drop([digest_id])
        if rowcount == 0:
            self._taken_over(digest_id, "its failure is left to that sender")

    def retry_now(self, now: datetime, *, failed: bool = False) -> int:
        """Make pending digests due now; with `failed`, give failed ones a new chance too."""
        with self.store.write() as w:
            n = core(w, update(DigestRow).where(col(DigestRow.status) == DigestStatus.PENDING)
                                  .values(next_try=now)).rowcount
            if failed:
                ids = list(core(w, select(col(DigestRow.id)).where(col(DigestRow.status) == DigestStatus.FAILED))
                           .scalars())
                n += core(w, update(DigestRow).where(col(DigestRow.id).in_(ids))
                                       .values(status=DigestStatus.PENDING, next_try=now, attempts=0)).rowcount
                core(w, update(DeliveryRow).where(col(DeliveryRow.digest_id).in_(ids))
                                  .values(status=DeliveryStatus.PENDING))
            return n

    def reroute_failed(self, targets: dict[str, list[tuple[str, str]]], now: datetime) -> tuple[int, int]:
        """Failed digests whose target has left its (still configured) subscription: their papers go to the
        subscription's current `targets` (subscription id -> (channel, target)s), the old digest is
        cancelled (`retry --failed` after fixing a wrong address or channel). (digests, deliveries made)."""
        rerouted = made = 0
        with self.store.write() as w:
            failed = core(w, select(col(DigestRow.id), col(DigestRow.subscription), col(DigestRow.channel),
                                    col(DigestRow.target)).where(col(DigestRow.status) == DigestStatus.FAILED)).all()
            for digest_id, sub, channel, target in failed:
                current = targets.get(sub)
                if digest_id is not None and current and (channel, target) not in current:
                    made += w.reroute_failed(digest_id, current, f"moved {now:%Y-%m-%d %H:%M} UTC to the "
                                             f"subscription's current targets by `digestbot retry --failed`")
                    rerouted += 1
        return rerouted, made

    def counts(self) -> dict[str, ChannelCounts]:
        """Per channel: digests pending / sending / sent / failed, and when the oldest pending was made."""
        result: dict[str, ChannelCounts] = {}
        with self.store.read() as s:
            rows = s.execute(select(col(DigestRow.channel), col(DigestRow.status), func.count(),
                                    func.min(col(DigestRow.created)))
                             .group_by(col(DigestRow.channel), col(DigestRow.status))).all()
            waiting = s.execute(select(col(DeliveryRow.channel), func.count(), func.min(col(DeliveryRow.created)))
                                .where(col(DeliveryRow.digest_id).is_(None),
                                       col(DeliveryRow.status) == DeliveryStatus.PENDING)
                                .group_by(col(DeliveryRow.channel))).all()
        for channel, status, n, oldest in rows:
            counts = result.setdefault(channel, ChannelCounts())
            if status in COUNTED:
                setattr(counts, status, n)
            if status in ACTIVE_DIGESTS:
                counts.oldest_pending = _min(counts.oldest_pending, as_utc(oldest))
        for channel, _n, oldest in waiting:  # matched papers waiting for their period's digest
            counts = result.setdefault(channel, ChannelCounts())
            counts.oldest_pending = _min(counts.oldest_pending, as_utc(oldest))
        return result

    def digests(self, status: DigestStatus) -> list[DigestRecord]:
        """The digests in `status`, oldest first."""
        return self.store.digests(status)

    def get(self, digest_id: int) -> DigestRecord | None:
        return self.store.digest(digest_id)


def _unrecorded(values: SentValues, target: str, budget: float, exc: StoreError) -> str:
    return (f"the server accepted digest {values['digest']}{f' for {target}' if target else ''} (Message-ID "
            f"{values['server_id']}), but it could not be recorded as sent within {budget:.3g} s: {exc}. A later "
            f"run will send it again, so it may arrive twice (with the same Message-ID). Free disk space, or "
            f"stop the process holding the database; this pass stopped here")


def _close(conn: Connection) -> None:
    conn.info.pop("write", None)  # the pool hands this connection out again
    try:
        conn.close()
    except DBAPIError:  # a connection broken by the error being handled: the pool drops it
        pass


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
