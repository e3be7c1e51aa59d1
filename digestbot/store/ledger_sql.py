"""The ledger's SQL, built once: the claim, the fenced `sent` record, and a runner of compiled
statements on the driver's cursor (the send pass's hot path, see ledger.py).

Like the other modules of digestbot.store, this one imports SQLAlchemy; nothing outside the package does.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, TypeVarTuple, overload

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CursorResult,
    Dialect,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import TypedReturnsRows
from sqlmodel import SQLModel, col

from .tables import ACTIVE, DeliveryRow, DigestRow
from .values import DeliveryStatus, DigestStatus
from .writer import Writer

Columns = TypeVarTuple("Columns")


def due(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Digests a sender may take at `now` (a datetime, or a bind parameter in the prebuilt statements)."""
    # The ACTIVE term repeats what the OR implies. It is spelled out, as SQL text with its constants
    # (a bound parameter would not do), so that SQLite can use the partial index of active digests
    # (tables.py), which that very term defines.
    return and_(text(ACTIVE),
                or_(and_(col(DigestRow.status) == DigestStatus.PENDING, col(DigestRow.next_try) <= now),
                    and_(col(DigestRow.status) == DigestStatus.SENDING, col(DigestRow.lease_until) < now)))


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
DIGEST_TABLE = SQLModel.metadata.tables[DigestRow.__tablename__]  # what DigestRow.__table__ is, typed
CLAIM_COLUMNS = [DIGEST_TABLE.c[COLUMN_OF_FIELD.get(name, name)] for name in Claim.__slots__]


def not_held_by(token: BindParameter[str]) -> ColumnElement[bool]:
    """Not a digest the sender with this token still holds: a pass whose `now` is past the lease would see
    its own claims in flight (sent by its sender threads, or a record held back) as due again."""
    return or_(col(DigestRow.status) != DigestStatus.SENDING, col(DigestRow.claimed_by).is_(None),
               col(DigestRow.claimed_by) != token)


# Built once (the send pass claims a batch every hundred digests; building them cost more than the SQL).
CANDIDATES = (select(col(DigestRow.id)).where(due(bindparam("now")), not_held_by(bindparam("token")))
              .order_by(col(DigestRow.id)).limit(bindparam("limit")).with_for_update(skip_locked=True))
CLAIM = (update(DigestRow).where(col(DigestRow.id).in_(bindparam("ids", expanding=True)), due(bindparam("now")),
                                 not_held_by(bindparam("token")))
         .values(status=DigestStatus.SENDING, lease_until=bindparam("lease_until"), claimed_by=bindparam("token"))
         .returning(*CLAIM_COLUMNS))


class SentValues(TypedDict):
    """The parameters of SENT_DIGEST and SENT_DELIVERIES."""
    digest: int
    server_id: str  # the Message-ID, or the Slack ts
    now: datetime
    token: str  # the claim's (Ledger.token)


# Fenced on the claim's token (or no claim at all: a digest recorded without claiming it first).
SENT_DIGEST = update(DigestRow).where(
    col(DigestRow.id) == bindparam("digest"),
    or_(col(DigestRow.claimed_by) == bindparam("token"), col(DigestRow.claimed_by).is_(None))).values(
    status=DigestStatus.SENT, message_id=bindparam("server_id"), sent_at=bindparam("now"), last_error=None,
    lease_until=None, attempts=col(DigestRow.attempts) + 1)
SENT_DELIVERIES = (update(DeliveryRow).where(col(DeliveryRow.digest_id) == bindparam("digest"))
                   .values(status=DeliveryStatus.SENT))
# On PostgreSQL both in one statement (each data-modifying CTE runs once), so that it is its own
# transaction: the digest's row if it is still ours, then its deliveries; how many digests that was.
_SENT_DIGEST_ID = SENT_DIGEST.returning(col(DigestRow.id)).cte("sent_digest")
SENT_ONCE = (select(func.count()).select_from(_SENT_DIGEST_ID)
             .add_cte(update(DeliveryRow).where(col(DeliveryRow.digest_id).in_(select(_SENT_DIGEST_ID.c.id)))
                      .values(status=DeliveryStatus.SENT).cte("sent_deliveries")))


class Prepared:
    """A statement compiled once for one dialect, run on a DBAPI cursor with SQLAlchemy's own bind
    processing (datetimes stored exactly as the ORM stores them) and its error classes."""

    def __init__(self, statement: ClauseElement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)  # DML and SELECT compile with the dialect's SQL compiler
        self.compiled = compiled
        self.order = compiled.positiontup if compiled.positional else None
        processors = ((name, bind.type.dialect_impl(dialect).bind_processor(dialect))
                      for name, bind in self.compiled.binds.items())
        self.processors = {name: process for name, process in processors if process is not None}

    def run(self, cursor: DBAPICursor, values: Mapping[str, object], dialect: Dialect) -> int:
        """Execute; the number of rows it changed (the driver's rowcount)."""
        params = self.compiled.construct_params(values)
        for name, process in self.processors.items():
            if name in params:  # `binds` also names the anonymous originals of renamed parameters
                params[name] = process(params[name])
        args = [params[name] for name in self.order] if self.order is not None else params
        try:
            cursor.execute(self.compiled.string, args)
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it, so Store.guarded explains it
            raise DBAPIError.instance(self.compiled.string, args, exc, dialect.loaded_dbapi.Error) from exc
        return cursor.rowcount


class SentRecord:
    """The `sent` record of one digest on the driver's cursor: True if the digest was still this sender's.

    PostgreSQL runs SENT_ONCE on a connection in autocommit (ledger.py `_hot`): one round trip, where
    BEGIN, two UPDATEs and COMMIT were four (0.54 ms a digest against 0.19 ms, and a sender waits for
    it before its next message). SQLite, in-process, runs the two UPDATEs in its BEGIN IMMEDIATE."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self.once = dialect.name == "postgresql"
        statements: list[ClauseElement] = [SENT_ONCE] if self.once else [SENT_DIGEST, SENT_DELIVERIES]
        self.statements = [Prepared(statement, dialect) for statement in statements]

    def run(self, cursor: DBAPICursor, values: Mapping[str, object]) -> bool:
        if self.once:
            self.statements[0].run(cursor, values, self.dialect)
            row = cursor.fetchone()
            return row is not None and row[0] == 1
        digest, deliveries = self.statements
        if digest.run(cursor, values, self.dialect) != 1:
            return False
        deliveries.run(cursor, values, self.dialect)
        return True


@overload
def core(w: Writer, statement: TypedReturnsRows[*Columns],
         params: Mapping[str, object] | None = None) -> CursorResult[*Columns]: ...
@overload
def core(w: Writer, statement: Executable,
         params: Mapping[str, object] | None = None) -> CursorResult[*tuple[Any, ...]]: ...


def core(w: Writer, statement: Executable,
         params: Mapping[str, object] | None = None) -> CursorResult[*tuple[Any, ...]]:
    """Run a statement on the transaction's connection, skipping the ORM's bookkeeping (which cost
    more than the SQLite commit itself; the ledger never holds ORM objects of these rows)."""
    return w.session.connection().execute(statement, params)
