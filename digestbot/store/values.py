"""The plain values the store hands out: statuses, what it records of a digest and of a source, UTC times.

Code outside digestbot.store gets these (and models.Paper/Match), never a table row: a row is bound to
the session that loaded it, and its columns are the database's business. This module imports neither
SQLAlchemy nor SQLModel.

The statuses are `StrEnum`s: a member is the very string stored in the `status` column (and equal to
it), so the database's contents, its indexes' SQL and the migrations are as they were.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import overload


class DigestStatus(StrEnum):
    """Where a digest (one message: subscription x channel x target x period) is. See ledger.py."""
    PENDING = "pending"  # due at next_try (at once when new, later after a failed attempt)
    SENDING = "sending"  # claimed by a sender until lease_until
    SENT = "sent"  # the server accepted it (message_id)
    FAILED = "failed"  # permanently, or too many attempts: only `digestbot retry --failed` revives it
    EMPTY = "empty"  # its period had nothing to send and the subscription does not send empty digests
    CANCELLED = "cancelled"  # its reader left (a one-click unsubscribe) before it was sent: never sent


ACTIVE_DIGESTS = (DigestStatus.PENDING, DigestStatus.SENDING)  # those a sender may claim


class DeliveryStatus(StrEnum):
    """Where one matched paper is on its way to one target: it follows the digest that took it."""
    PENDING = "pending"  # waiting for its period's digest, or in a digest not sent yet
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"  # its reader left before it was sent


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """What the ledger records of one digest (`digestbot status`, tests)."""
    id: int
    subscription_id: str
    channel: str  # the ledger channel: email | slack
    target: str  # an address, a Slack channel
    period: str  # the period's key (schedule.py), or instant:TIME
    status: DigestStatus
    papers: int  # deliveries the digest took when it was opened
    attempts: int
    next_try: datetime | None
    lease_until: datetime | None  # while `sending`: when another sender may take it over
    last_error: str | None
    message_id: str | None  # what the server said: the Message-ID, or the Slack ts
    created: datetime
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """What the store remembers of a source's polls (`digestbot status`)."""
    name: str
    last_poll: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    papers_seen: int  # listings seen in all successful polls (a paper listed twice counts twice)
    last_new: int  # new papers in the last successful poll
    failures: int = 0  # failed polls since the last success
    polls: int = 0  # every poll, ever
    failed_polls: int = 0  # of them, those that failed

    @property
    def failing(self) -> bool:
        """Its latest poll failed: an error newer than its last success (or no success ever)."""
        if not self.last_error:
            return False
        return self.last_success is None or self.last_error_at is None or self.last_error_at >= self.last_success


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """A problem alerts.py watches, as the store remembers it."""
    problem: str  # "source-failing:hf", "source-quiet:arxiv", "digests-failed", "daemon-crashed:HOST"
    open: bool
    opened_at: datetime
    resolved_at: datetime | None = None
    announced: bool = False  # its alert went out in this episode (so its recovery is told too)
    last_alert_day: str | None = None  # YYYY-MM-DD of the last alert message (at most one a day)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert or recovery message, queued for each target as a digest row of ALERTS (see AlertBook)."""
    period: str  # its ledger key: one message per key and target, ever
    problem: str
    subject: str
    text: str
    targets: tuple[tuple[str, str], ...]  # (ledger channel, target)


ALERTS = "_alerts"  # the reserved subscription id of alert messages in the ledger (no slug starts with "_")
VOTES = ("up", "down")  # "more like this", "not for me"
ANY_TARGET = "*"  # a vote recorded for the subscription as a whole (`digestbot feedback` without --target)


@dataclass(frozen=True, slots=True)
class Vote:
    """A reader's feedback on one paper of a subscription (the latest: a new vote replaces it)."""
    subscription_id: str
    target: str  # the address or Slack channel the digest went to; ANY_TARGET from the command line
    paper: str  # the paper's key (bare arXiv id, else its title slug)
    vote: str  # "up" (more like this) or "down" (not for me)
    at: datetime


class ConfirmationStatus(StrEnum):
    """Where a subscribe request (web/subscribe.py: double opt-in) is."""
    PENDING = "pending"  # recorded; its mail not handed over yet
    SENDING = "sending"  # claimed by a sender until lease_until (a crash leaves it for the next start)
    SENT = "sent"  # the SMTP server took its mail
    CONFIRMED = "confirmed"  # its reader pressed the button: the address is in the config


@dataclass(frozen=True, slots=True)
class ConfirmationRecord:
    """A request to get a subscription, waiting for its reader to follow the link mailed to them."""
    id: int
    subscription_id: str  # a public subscription's id; "" for a query of the reader's own
    query: str  # that query ("" for a public subscription)
    target: str  # the address that asked
    requested_at: datetime
    sent_at: datetime | None
    confirmed_at: datetime | None
    status: ConfirmationStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A running `digestbot run` daemon's latest sign of life: one per process (host, pid), so daemons on
    two machines are both visible; a daemon stopping cleanly removes its own."""
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime


# A column declared NOT NULL stays a plain datetime (tables.py), so its readers need no None check.
@overload
def as_utc(value: datetime) -> datetime: ...
@overload
def as_utc(value: datetime | None) -> datetime | None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
