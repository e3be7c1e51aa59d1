"""What alerts.py reads and writes: each source's history of new listings, failed digests, the problems
it watches (`alert`), and its messages, queued in the digest ledger.

An alert message is one `alert_message` row (its text) and one digest row per recipient, of the reserved
subscription ALERTS, whose period is the message's key: the ledger's claim, lease, sent-once record and
retries deliver it like any digest, `digestbot status` counts it, and its unique (subscription, channel,
target, period) makes queuing the same message twice a no-op. The decision and its writes happen in one
write transaction (`update`), so two processes checking at once cannot both open a problem.

Like the other modules of digestbot.store, this one imports SQLAlchemy; nothing outside the package does.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from .database import Store
from .tables import AlertMessageRow, AlertRow, DigestRow, SourceNewsRow, alert_record
from .values import ALERTS, AlertMessage, AlertRecord, DigestStatus, as_utc

Decision = tuple[list[AlertRecord], list[AlertMessage]]  # the problems' new states, the messages to queue


class AlertBook:
    """The alerts of one database."""

    def __init__(self, store: Store):
        self.store = store

    def alerts(self) -> dict[str, AlertRecord]:
        with self.store.read() as s:
            return _alerts(s)

    def news(self, sources: Iterable[str], since: datetime) -> dict[str, list[datetime]]:
        """Source -> when its polls listed new papers since `since`, oldest first (one query)."""
        found: dict[str, list[datetime]] = {name: [] for name in sources}
        if not found:
            return found
        with self.store.read() as s:
            rows = s.exec(select(col(SourceNewsRow.source), col(SourceNewsRow.at))
                          .where(col(SourceNewsRow.source).in_(list(found)), col(SourceNewsRow.at) >= since)
                          .order_by(col(SourceNewsRow.at))).all()
        for source, at in rows:
            found[source].append(as_utc(at))
        return found

    def failed_digests(self) -> tuple[int, str | None]:
        """How many digests (not alert messages) failed for good, and the newest one's error."""
        with self.store.read() as s:
            failed = (col(DigestRow.status) == DigestStatus.FAILED, col(DigestRow.subscription) != ALERTS)
            count = s.exec(select(func.count()).select_from(DigestRow).where(*failed)).one()
            error = s.exec(select(col(DigestRow.last_error)).where(*failed)
                           .order_by(col(DigestRow.id).desc()).limit(1)).first() if count else None
        return count, error

    def message(self, period: str) -> AlertMessage | None:
        """The message queued under `period` (its targets are its digest rows, not repeated here)."""
        with self.store.read() as s:
            row = s.get(AlertMessageRow, period)
        return None if row is None else AlertMessage(row.period, row.problem, row.subject, row.text, ())

    def update(self, decide: Callable[[dict[str, AlertRecord]], Decision], now: datetime) -> Decision:
        """In one write transaction: read the problems, `decide` their new states and messages, write both
        (a message's digest rows are due at once). What was decided is returned."""
        with self.store.write() as w:
            changes, messages = decide(_alerts(w.session))
            for record in changes:
                w.session.merge(AlertRow(problem=record.problem, state="open" if record.open else "resolved",
                                         opened_at=record.opened_at, resolved_at=record.resolved_at,
                                         announced=record.announced, last_alert_day=record.last_alert_day,
                                         detail=record.detail))
            for message in messages:
                if w.session.get(AlertMessageRow, message.period) is None:
                    w.session.add(AlertMessageRow(period=message.period, problem=message.problem,
                                                  subject=message.subject, text=message.text, created=now))
                    w.session.flush()
                for channel, target in message.targets:
                    w.open_digest(ALERTS, channel, target, message.period, now, allow_empty=True)
        return changes, messages


def _alerts(session: Session) -> dict[str, AlertRecord]:
    return {row.problem: alert_record(row) for row in session.exec(select(AlertRow)).all()}
