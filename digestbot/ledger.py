"""The send side of the ledger (DESIGN §4): claim digests, record what the server said, retry, count.

A digest row moves  pending -> sending -> sent | pending (retry later) | failed (permanent).

- Claiming is one conditional UPDATE inside a write transaction (BEGIN IMMEDIATE on SQLite); on
  PostgreSQL the candidate rows are selected `FOR UPDATE SKIP LOCKED`, so two senders never get the
  same row and never wait for each other. SQLite ignores FOR UPDATE; the UPDATE's own WHERE (the row
  is still due) is what makes it atomic there.
- A claim is a lease: a sender that dies mid-send leaves the row `sending`; once the lease runs out
  the row is due again. The message may then arrive twice, with the same Message-ID.
- `sent` is written, one digest per transaction, only after the server accepted the message: batching
  these commits would widen the duplicate window after a crash from one message to the batch. The
  send pass commits it while the next message's MAIL command is with the server, and hands that
  message over only afterwards (`sent_soon`, `settle`): still one message.

Like store.py, this is a module that imports SQLAlchemy; nothing else does.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterator

from sqlalchemy import Connection, Dialect, and_, bindparam, func, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from .store import DeliveryRow, DigestRow, Store, _aware
from .tables import ACTIVE

RETRY_FIRST, RETRY_MAX = timedelta(minutes=1), timedelta(hours=6)
MAX_ATTEMPTS = 12  # about two days of backoff; then the digest is `failed` and shows in `status`
LEASE = timedelta(minutes=10)


def backoff(attempt: int) -> timedelta:
    """Exponential (1 min, 2, 4, ... capped at 6 h) with +-25% jitter so retries do not stampede."""
    delay = min(RETRY_FIRST * 2 ** (max(attempt, 1) - 1), RETRY_MAX)
    return delay * (0.75 + random.random() / 2)


def _due(now):
    """Digests a sender may take at `now` (a datetime, or a bind parameter in the prebuilt statements)."""
    # The ACTIVE term repeats what the OR implies. It is spelled out, as SQL text with its constants
    # (a bound parameter would not do), so that SQLite can use the partial index of active digests
    # (tables.py), which that very term defines.
    return and_(text(ACTIVE),
                or_(and_(DigestRow.status == "pending", DigestRow.next_try <= now),
                    and_(DigestRow.status == "sending", DigestRow.lease_until < now)))


@dataclass(frozen=True, slots=True)
class Claim:
    """A digest this sender holds (status `sending`): what sending it takes."""
    id: int
    subscription: str
    channel: str
    target: str
    period: str
    attempts: int


_CLAIM_COLUMNS = [getattr(DigestRow.__table__.c, name) for name in Claim.__slots__]


@dataclass
class ChannelCounts:
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    oldest_pending: datetime | None = None


class Ledger:
    """The digest ledger of one Store."""

    def __init__(self, store: Store, lease: timedelta = LEASE):
        self.store, self.lease = store, lease
        self._conn: Connection | None = None
        self._sent: list[_Prepared] | None = None
        self._pending: tuple[int, str, datetime] | None = None  # a sent digest not yet committed

    @contextmanager
    def _hot(self, doing: str) -> Iterator[Connection]:
        """A write transaction (BEGIN IMMEDIATE) on one connection kept for the whole send pass: a
        Session and a pool checkout per sent digest cost more than the SQLite commit itself."""
        if self._conn is None:
            self._conn = self.store.engine.connect()
            self._conn.info["write"] = True
        with self.store._guard(doing), self._conn.begin():
            yield self._conn

    def close(self) -> None:
        try:
            self.settle()
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.info.pop("write", None)  # the pool hands this connection out again
            self._conn.close()
            self._conn = None

    def claim_batch(self, now: datetime, limit: int = 100) -> list[Claim]:
        """Take up to `limit` due digests for this sender (oldest first); nobody else gets them."""
        self.settle()
        with self.store.write() as w:
            ids = list(_core(w, _CANDIDATES, {"now": now, "limit": limit}).scalars())
            if not ids:
                return []
            claimed = _core(w, _CLAIM, {"ids": ids, "now": now, "lease_until": now + self.lease}).all()
        return sorted((Claim(*row) for row in claimed), key=lambda claim: claim.id)

    def claim(self, digest_id: int, now: datetime) -> bool:
        """Take one digest; False when another sender has it or it is not due."""
        self.settle()
        with self.store.write() as w:
            result = _core(w, update(DigestRow).where(DigestRow.id == digest_id, _due(now))
                                       .values(status="sending", lease_until=now + self.lease))
            return result.rowcount == 1

    def release(self, ids: list[int], next_try: datetime) -> None:
        """Give back claimed digests that were not attempted (their channel went down first)."""
        self.settle()
        if ids:
            with self.store.write() as w:
                _core(w, update(DigestRow).where(DigestRow.id.in_(ids), DigestRow.status == "sending")
                                  .values(status="pending", lease_until=None, next_try=next_try))

    def sent(self, digest_id: int, server_id: str, now: datetime) -> None:
        """The server accepted it: `server_id` is the Message-ID or the Slack ts."""
        self.settle()
        self._record_sent(digest_id, server_id, now)

    def sent_soon(self, digest_id: int, server_id: str, now: datetime) -> None:
        """Like `sent`, committed by the next `settle()`: the send pass settles while the next
        message's first SMTP command is with the server (Channel.send_after), so the commit costs no
        extra time. Still at most one accepted digest unrecorded: the next message is handed over
        only after `settle()`, and every other ledger call (and `close`) settles first."""
        self.settle()
        self._pending = (digest_id, server_id, now)

    def settle(self) -> None:
        """Commit the digest `sent_soon` recorded, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._record_sent(*pending)

    def _record_sent(self, digest_id: int, server_id: str, now: datetime) -> None:
        """The hot path of a send pass: statements compiled once and run on the driver's cursor
        (SQLAlchemy's per-statement bookkeeping cost more than the SQLite commit); one commit."""
        values = {"digest": digest_id, "server_id": server_id, "now": now}
        with self._hot("record a sent digest") as conn:
            if self._sent is None:
                self._sent = [_Prepared(statement, conn.dialect) for statement in (_SENT_DIGEST, _SENT_DELIVERIES)]
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                for prepared in self._sent:
                    prepared.run(cursor, values, conn.dialect)
            finally:
                cursor.close()

    def failed(self, row: Claim, error: str, now: datetime, *, permanent: bool) -> datetime | None:
        """Record a failed attempt; the next try time, or None when it will not be retried."""
        self.settle()
        attempts = row.attempts + 1
        if permanent or attempts >= MAX_ATTEMPTS:
            reason = error if permanent else f"gave up after {attempts} attempts: {error}"
            self._finish(row.id, "failed", last_error=reason, attempts=attempts)
            return None
        retry_at = now + backoff(attempts)
        with self.store.write() as w:
            _core(w, update(DigestRow).where(DigestRow.id == row.id).values(
                status="pending", next_try=retry_at, last_error=error, lease_until=None, attempts=attempts))
        return retry_at

    def _finish(self, digest_id: int, status: str, **values) -> None:
        self.settle()
        with self.store.write() as w:
            _core(w, update(DigestRow).where(DigestRow.id == digest_id)
                              .values(status=status, lease_until=None, **values))
            _core(w, update(DeliveryRow).where(DeliveryRow.digest_id == digest_id).values(status=status))

    def retry_now(self, now: datetime, *, failed: bool = False) -> int:
        """Make pending digests due now; with `failed`, give failed ones a new chance too."""
        self.settle()
        with self.store.write() as w:
            n = _core(w, update(DigestRow).where(DigestRow.status == "pending")
                                  .values(next_try=now)).rowcount
            if failed:
                ids = list(_core(w, select(DigestRow.id).where(DigestRow.status == "failed")).scalars())
                n += _core(w, update(DigestRow).where(DigestRow.id.in_(ids))
                                       .values(status="pending", next_try=now, attempts=0)).rowcount
                _core(w, update(DeliveryRow).where(DeliveryRow.digest_id.in_(ids))
                                  .values(status="pending"))
            return n

    def counts(self) -> dict[str, ChannelCounts]:
        """Per channel: digests pending / sending / sent / failed, and when the oldest pending was made."""
        result: dict[str, ChannelCounts] = {}
        with self.store.read() as s:
            rows = s.execute(select(DigestRow.channel, DigestRow.status, func.count(), func.min(DigestRow.created))
                             .group_by(DigestRow.channel, DigestRow.status)).all()
            waiting = s.execute(select(DeliveryRow.channel, func.count(), func.min(DeliveryRow.created))
                                .where(DeliveryRow.digest_id.is_(None), DeliveryRow.status == "pending")
                                .group_by(DeliveryRow.channel)).all()
        for channel, status, n, oldest in rows:
            counts = result.setdefault(channel, ChannelCounts())
            if hasattr(counts, status):
                setattr(counts, status, n)
            if status in ("pending", "sending"):
                counts.oldest_pending = _min(counts.oldest_pending, _aware(oldest))
        for channel, _n, oldest in waiting:  # matched papers waiting for their period's digest
            counts = result.setdefault(channel, ChannelCounts())
            counts.oldest_pending = _min(counts.oldest_pending, _aware(oldest))
        return result

    def digests(self, status: str) -> list[DigestRow]:
        with self.store.read() as s:
            return list(s.execute(select(DigestRow).where(DigestRow.status == status)
                                  .order_by(DigestRow.id)).scalars())

    def get(self, digest_id: int) -> DigestRow | None:
        with self.store.read() as s:
            return s.get(DigestRow, digest_id)


# Built once (the send pass claims a batch every hundred digests; building them cost more than the SQL).
_CANDIDATES = (select(DigestRow.id).where(_due(bindparam("now"))).order_by(DigestRow.id).limit(bindparam("limit"))
               .with_for_update(skip_locked=True))
_CLAIM = (update(DigestRow).where(DigestRow.id.in_(bindparam("ids", expanding=True)), _due(bindparam("now")))
          .values(status="sending", lease_until=bindparam("lease_until")).returning(*_CLAIM_COLUMNS))
_SENT_DIGEST = update(DigestRow).where(DigestRow.id == bindparam("digest")).values(
    status="sent", message_id=bindparam("server_id"), sent_at=bindparam("now"), last_error=None, lease_until=None,
    attempts=DigestRow.attempts + 1)
_SENT_DELIVERIES = update(DeliveryRow).where(DeliveryRow.digest_id == bindparam("digest")).values(status="sent")


class _Prepared:
    """A statement compiled once for one dialect, run on a DBAPI cursor with SQLAlchemy's own bind
    processing (datetimes stored exactly as the ORM stores them) and its error classes."""

    def __init__(self, statement, dialect: Dialect):
        self.compiled = statement.compile(dialect=dialect)
        self.order = self.compiled.positiontup if self.compiled.positional else None
        processors = ((name, bind.type.dialect_impl(dialect).bind_processor(dialect))
                      for name, bind in self.compiled.binds.items())
        self.processors = {name: process for name, process in processors if process is not None}

    def run(self, cursor, values: dict, dialect: Dialect) -> None:
        params = self.compiled.construct_params(values)
        for name, process in self.processors.items():
            if name in params:  # `binds` also names the anonymous originals of renamed parameters
                params[name] = process(params[name])
        args = [params[name] for name in self.order] if self.order is not None else params
        try:
            cursor.execute(self.compiled.string, args)
        except dialect.dbapi.Error as exc:  # as SQLAlchemy would raise it, so Store._guard explains it
            raise DBAPIError.instance(self.compiled.string, args, exc, dialect.dbapi.Error) from exc


def _core(w, statement, params=None):
    """Run a statement on the transaction's connection, skipping the ORM's bookkeeping (which cost
    more than the SQLite commit itself; the ledger never holds ORM objects of these rows)."""
    return w.session.connection().execute(statement, params)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
