"""The ledger's SQL, built once: the claim, the fenced `sent` record, and a runner of compiled
statements on the driver's cursor (the send pass's hot path, see ledger.py).

Like the other modules of digestbot.store, this one imports SQLAlchemy; nothing outside the package does.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Dialect, and_, bindparam, or_, select, text, update
from sqlalchemy.exc import DBAPIError

from .tables import ACTIVE, DeliveryRow, DigestRow
from .values import DeliveryStatus, DigestStatus


def due(now):
    """Digests a sender may take at `now` (a datetime, or a bind parameter in the prebuilt statements)."""
    # The ACTIVE term repeats what the OR implies. It is spelled out, as SQL text with its constants
    # (a bound parameter would not do), so that SQLite can use the partial index of active digests
    # (tables.py), which that very term defines.
    return and_(text(ACTIVE),
                or_(and_(DigestRow.status == DigestStatus.PENDING, DigestRow.next_try <= now),
                    and_(DigestRow.status == DigestStatus.SENDING, DigestRow.lease_until < now)))


@dataclass(frozen=True, slots=True)
class Claim:
    """A digest this sender holds (status `sending`): what sending it takes."""
    id: int
    subscription_id: str
    channel: str  # the ledger channel: email | slack
    target: str
    period: str
    attempts: int  # before this one


# The digest table's columns in the order of Claim's fields (`Claim(*row)`: the claim is on the hot path).
COLUMN_OF_FIELD = {"subscription_id": "subscription"}  # the column's name says less than the field's
CLAIM_COLUMNS = [DigestRow.__table__.c[COLUMN_OF_FIELD.get(name, name)] for name in Claim.__slots__]


# Built once (the send pass claims a batch every hundred digests; building them cost more than the SQL).
CANDIDATES = (select(DigestRow.id).where(due(bindparam("now"))).order_by(DigestRow.id).limit(bindparam("limit"))
              .with_for_update(skip_locked=True))
CLAIM = (update(DigestRow).where(DigestRow.id.in_(bindparam("ids", expanding=True)), due(bindparam("now")))
         .values(status=DigestStatus.SENDING, lease_until=bindparam("lease_until"), claimed_by=bindparam("token"))
         .returning(*CLAIM_COLUMNS))
# Fenced on the claim's token (or no claim at all: a digest recorded without claiming it first).
SENT_DIGEST = update(DigestRow).where(
    DigestRow.id == bindparam("digest"),
    or_(DigestRow.claimed_by == bindparam("token"), DigestRow.claimed_by.is_(None))).values(
    status=DigestStatus.SENT, message_id=bindparam("server_id"), sent_at=bindparam("now"), last_error=None,
    lease_until=None, attempts=DigestRow.attempts + 1)
SENT_DELIVERIES = (update(DeliveryRow).where(DeliveryRow.digest_id == bindparam("digest"))
                   .values(status=DeliveryStatus.SENT))


class Prepared:
    """A statement compiled once for one dialect, run on a DBAPI cursor with SQLAlchemy's own bind
    processing (datetimes stored exactly as the ORM stores them) and its error classes."""

    def __init__(self, statement, dialect: Dialect):
        self.compiled = statement.compile(dialect=dialect)
        self.order = self.compiled.positiontup if self.compiled.positional else None
        processors = ((name, bind.type.dialect_impl(dialect).bind_processor(dialect))
                      for name, bind in self.compiled.binds.items())
        self.processors = {name: process for name, process in processors if process is not None}

    def run(self, cursor, values: dict, dialect: Dialect) -> int:
        """Execute; the number of rows it changed (the driver's rowcount)."""
        params = self.compiled.construct_params(values)
        for name, process in self.processors.items():
            if name in params:  # `binds` also names the anonymous originals of renamed parameters
                params[name] = process(params[name])
        args = [params[name] for name in self.order] if self.order is not None else params
        try:
            cursor.execute(self.compiled.string, args)
        except dialect.dbapi.Error as exc:  # as SQLAlchemy would raise it, so Store.guarded explains it
            raise DBAPIError.instance(self.compiled.string, args, exc, dialect.dbapi.Error) from exc
        return cursor.rowcount


def core(w, statement, params=None):
    """Run a statement on the transaction's connection, skipping the ORM's bookkeeping (which cost
    more than the SQLite commit itself; the ledger never holds ORM objects of these rows)."""
    return w.session.connection().execute(statement, params)
