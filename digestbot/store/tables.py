"""The database tables (SQLModel), and the conversion of their rows into the values the store hands out.

`paper` (one row per paper whatever its sources), `source_state` (per source: last success, last
error, conditional-GET validators), `match` (subscription x paper, with score and hits), `delivery`
(the ledger: subscription x paper x channel x target, created with the match) and `digest` (one send:
subscription x channel x target x period, grouping deliveries), `suppression` (readers who left by a
one-click link), `vote` (readers' feedback on papers), `heartbeat` (running daemons), `confirmation`
(subscribe requests waiting for their reader's click), `source_news`, `alert` and `alert_message` (alerts.py's
history, problems and messages), `installation`
(one row: the database's random id, part of every Message-ID). Only the modules of digestbot.store use these; what
leaves the package is a `Paper`, `DigestRecord` or `SourceRecord` made by the functions at the end.

The `status` columns hold the values of values.DigestStatus and values.DeliveryStatus; they are
plain strings to the database (a SQL enum type would be a schema change).
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Protocol

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel, UniqueConstraint

from ..models import Paper
from .values import (
    ACTIVE_DIGESTS,
    AlertRecord,
    ConfirmationRecord,
    ConfirmationStatus,
    DeliveryStatus,
    DigestRecord,
    DigestStatus,
    Heartbeat,
    SourceRecord,
    Vote,
    as_utc,
)


class PaperRow(SQLModel, table=True):
    __tablename__ = "paper"
    id: int | None = Field(default=None, primary_key=True)
    arxiv_id: str | None = Field(default=None, unique=True)
    slug: str = Field(index=True)
    title: str
    abstract: str = ""
    authors: str = "[]"
    published: datetime | None = None
    url: str | None = None
    upvotes: int = 0
    ai_summary: str | None = None
    ai_keywords: str = "[]"
    github: str | None = None
    project_page: str | None = None
    sources: str = "[]"
    first_seen: datetime = Field(index=True)
    updated: datetime


class SourceState(SQLModel, table=True):
    __tablename__ = "source_state"
    name: str = Field(primary_key=True)
    last_poll: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    papers_seen: int = 0
    last_new: int = 0
    validators: str = "{}"
    failures: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # failed polls since the last success
    polls: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # every poll, ever (/metrics' counter)
    failed_polls: int = Field(default=0, sa_column_kwargs={"server_default": "0"})  # of them, the failed ones


class SourceNewsRow(SQLModel, table=True):
    """When a source's successful poll listed new papers: the history its usual gaps are learned from
    (alerts.py: arXiv announces nothing on Friday and Saturday). Rows older than NEWS_DAYS are pruned."""
    __tablename__ = "source_news"
    source: str = Field(primary_key=True)
    at: datetime = Field(primary_key=True)
    new: int = 0


class AlertRow(SQLModel, table=True):
    """One problem alerts.py watches ("source-failing:hf", "digests-failed", "daemon-crashed:HOST"): open
    or resolved, since when, whether its alert went out, and the day of the last one (one a day at most)."""
    __tablename__ = "alert"
    problem: str = Field(primary_key=True)
    state: str  # open | resolved
    opened_at: datetime
    resolved_at: datetime | None = None
    announced: bool = False  # an alert message of this episode was queued: its recovery is told too
    last_alert_day: str | None = None  # YYYY-MM-DD (bot.timezone) of the last alert message queued
    detail: str = ""


class AlertMessageRow(SQLModel, table=True):
    """The text of one alert or recovery message; its deliveries are digest rows of the reserved
    subscription "_alerts" whose period is this row's key, so the ledger sends each once and retries it."""
    __tablename__ = "alert_message"
    period: str = Field(primary_key=True)
    problem: str
    subject: str
    text: str
    created: datetime


class MatchRow(SQLModel, table=True):
    __tablename__ = "match"
    __table_args__ = (UniqueConstraint("subscription", "paper_id"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription: str
    paper_id: int = Field(foreign_key="paper.id", index=True)
    score: float = 0.0
    hits: str = "[]"
    created: datetime


WAITING = "digest_id IS NULL"  # matched, not yet taken by a digest (writer.py: open_digest)


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("subscription", "paper_id", "channel", "target"),
                      Index("ix_delivery_waiting", "subscription", "channel", "target", sqlite_where=text(WAITING),
                            postgresql_where=text(WAITING)))
    id: int | None = Field(default=None, primary_key=True)
    # Not indexed alone: the unique constraint above starts with it (migration 0009 dropped that index).
    subscription: str
    paper_id: int = Field(foreign_key="paper.id")
    channel: str  # email | slack (the transport is chosen when sending)
    target: str  # an address, a channel name
    # No index on status: each sent digest would move its deliveries' entries (the commit on the send
    # path); the partial index above finds the waiting ones.
    status: str = DeliveryStatus.PENDING
    digest_id: int | None = Field(default=None, foreign_key="digest.id", index=True)
    created: datetime


# The digests a sender may claim (ledger.py), as SQL text: "status IN ('pending', 'sending')", the
# predicate of the partial index below, which the migrations spell the same way.
ACTIVE = "status IN ({})".format(", ".join(f"'{status}'" for status in ACTIVE_DIGESTS))


class DigestRow(SQLModel, table=True):
    __tablename__ = "digest"
    __table_args__ = (UniqueConstraint("subscription", "channel", "target", "period"),
                      # Claiming takes the oldest due digests; this index lists only the active ones, in
                      # id order, so a claim reads its batch instead of sorting every pending digest
                      # (and never touches the ever-growing history of sent ones). A full index on
                      # status would cost every `sent` commit two more entries to move.
                      Index("ix_digest_active", "id", sqlite_where=text(ACTIVE), postgresql_where=text(ACTIVE)))
    id: int | None = Field(default=None, primary_key=True)
    subscription: str
    channel: str
    target: str
    period: str
    status: str = DigestStatus.PENDING
    papers: int = 0
    attempts: int = 0
    next_try: datetime | None = None
    lease_until: datetime | None = None
    # The token of the sender that claimed it last (ledger.py): `sent`/`failed` are written only by
    # the holder of the claim, so a sender whose lease ran out cannot overwrite the one that took over.
    claimed_by: str | None = None
    last_error: str | None = None
    message_id: str | None = None
    created: datetime
    sent_at: datetime | None = None


class SuppressionRow(SQLModel, table=True):
    """A reader who left a subscription by its one-click link (web/): nothing is sent to this target for
    this subscription, even if the config lists it again, until they undo it."""
    __tablename__ = "suppression"
    subscription: str = Field(primary_key=True)
    target: str = Field(primary_key=True)  # an address, a Slack channel
    since: datetime


class VoteRow(SQLModel, table=True):
    """A reader's "more like this" (up) or "not for me" (down) on a paper of a digest (web/feedback.py,
    `digestbot feedback`). One per (subscription, target, paper): a later vote replaces the earlier one.
    The paper is its key (models.Paper.key), not a row id: a vote outlives `init --force`."""
    __tablename__ = "vote"
    subscription: str = Field(primary_key=True)
    target: str = Field(primary_key=True)  # an address, a Slack channel, or ANY_TARGET (the command line)
    paper: str = Field(primary_key=True)
    vote: str  # up | down
    at: datetime


class EmbeddingRow(SQLModel, table=True):
    """A paper's sentence embedding under one model (relevance/embed.py): computed once, when the paper is
    first stored, for `[relevance] representation = "semantic"`. Keyed by the paper's key, as votes are."""
    __tablename__ = "embedding"
    model: str = Field(primary_key=True)  # the model's name or directory ([relevance] model)
    paper: str = Field(primary_key=True)
    vector: bytes  # float32, little-endian, normalised


class HeartbeatRow(SQLModel, table=True):
    """A running daemon's latest heartbeat (daemon.py, every HEARTBEAT_SECONDS): one row per process,
    deleted when it stops cleanly; /healthz and `digestbot status` show its age."""
    __tablename__ = "heartbeat"
    host: str = Field(primary_key=True)
    pid: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    started_at: datetime
    beat_at: datetime


class ConfirmationRow(SQLModel, table=True):
    """A subscribe request (web/subscribe.py) and its confirmation mail: recorded, claimed, sent, confirmed.
    Kept two days (the confirm link's life), for the per-address limits and so a mail goes once."""
    __tablename__ = "confirmation"
    __table_args__ = (Index("ix_confirmation_target", "target", "requested_at"),  # the per-address limit
                      Index("ix_confirmation_requested_at", "requested_at"))  # dropping old ones
    id: int | None = Field(default=None, primary_key=True)
    subscription: str  # a public subscription's id, or "" for a query of the reader's own
    query: str  # that query, or ""
    target: str  # the address
    requested_at: datetime
    sent_at: datetime | None = None
    confirmed_at: datetime | None = None
    status: str = ConfirmationStatus.PENDING
    lease_until: datetime | None = None  # while `sending`: when a restarted process may send it after all


class InstallationRow(SQLModel, table=True):
    """This database's id. Digest row ids restart at 1 in every new database (`init --force`, a second
    installation), so Message-IDs carry this too: a mail client that hides a repeated Message-ID as a
    duplicate must never hide a different digest."""
    __tablename__ = "installation"
    slot: int = Field(default=1, primary_key=True)  # always 1: a second insert conflicts (one row)
    id: str
    created: datetime


class PaperColumns(Protocol):
    """What `paper_from_row` reads: a PaperRow, or a result row with the paper table's columns
    (a Row's attributes are its columns, read-only, hence properties)."""

    @property
    def title(self) -> str: ...
    @property
    def abstract(self) -> str: ...
    @property
    def arxiv_id(self) -> str | None: ...
    @property
    def authors(self) -> str: ...
    @property
    def published(self) -> datetime | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def upvotes(self) -> int: ...
    @property
    def ai_summary(self) -> str | None: ...
    @property
    def ai_keywords(self) -> str: ...
    @property
    def github(self) -> str | None: ...
    @property
    def project_page(self) -> str | None: ...
    @property
    def sources(self) -> str: ...
    @property
    def first_seen(self) -> datetime: ...


def paper_from_row(row: PaperColumns) -> Paper:
    """From a PaperRow, or a result row with its columns."""
    return Paper(title=row.title, abstract=row.abstract, arxiv_id=row.arxiv_id,
                 authors=tuple(json.loads(row.authors)), published=as_utc(row.published), url=row.url,
                 upvotes=row.upvotes, ai_summary=row.ai_summary, ai_keywords=tuple(json.loads(row.ai_keywords)),
                 github=row.github, project_page=row.project_page, sources=tuple(json.loads(row.sources)),
                 first_seen=as_utc(row.first_seen))


def digest_record(row: DigestRow) -> DigestRecord:
    assert row.id is not None  # a row read from the table: SQLModel types the id of one not yet inserted too
    return DigestRecord(id=row.id, subscription_id=row.subscription, channel=row.channel, target=row.target,
                        period=row.period, status=DigestStatus(row.status), papers=row.papers,
                        attempts=row.attempts, next_try=as_utc(row.next_try), lease_until=as_utc(row.lease_until),
                        last_error=row.last_error, message_id=row.message_id, created=as_utc(row.created),
                        sent_at=as_utc(row.sent_at))


def source_record(row: SourceState) -> SourceRecord:
    return SourceRecord(name=row.name, last_poll=as_utc(row.last_poll), last_success=as_utc(row.last_success),
                        last_error=row.last_error, last_error_at=as_utc(row.last_error_at),
                        papers_seen=row.papers_seen, last_new=row.last_new, failures=row.failures,
                        polls=row.polls, failed_polls=row.failed_polls)


def alert_record(row: AlertRow) -> AlertRecord:
    return AlertRecord(problem=row.problem, open=row.state == "open", opened_at=as_utc(row.opened_at),
                       resolved_at=as_utc(row.resolved_at), announced=row.announced,
                       last_alert_day=row.last_alert_day, detail=row.detail)


def vote_record(row: VoteRow) -> Vote:
    return Vote(subscription_id=row.subscription, target=row.target, paper=row.paper, vote=row.vote,
                at=as_utc(row.at))


def heartbeat_record(row: HeartbeatRow) -> Heartbeat:
    return Heartbeat(host=row.host, pid=row.pid, started_at=as_utc(row.started_at), beat_at=as_utc(row.beat_at))


def confirmation_record(row: ConfirmationRow) -> ConfirmationRecord:
    assert row.id is not None
    return ConfirmationRecord(id=row.id, subscription_id=row.subscription, query=row.query, target=row.target,
                              requested_at=as_utc(row.requested_at), sent_at=as_utc(row.sent_at),
                              confirmed_at=as_utc(row.confirmed_at), status=ConfirmationStatus(row.status))
