"""The operations of one write transaction: record papers (with their identity), matches and the
ledger rows that go with them, and what a poll of a source did. Opened by `Store.write()`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, Dialect, and_, bindparam, delete, func, insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import ReturningInsert
from sqlmodel import Session, SQLModel, col, select

from ..errors import StoreError
from ..models import Hit, Match, Paper
from .identity import PaperIndex, merge_into
from .tables import (
    ConfirmationRow,
    DeliveryRow,
    DigestRow,
    EmbeddingRow,
    HeartbeatRow,
    MatchRow,
    PaperRow,
    SourceNewsRow,
    SourceState,
    SuppressionRow,
    VoteRow,
    confirmation_record,
)
from .values import ConfirmationRecord, ConfirmationStatus, DeliveryStatus, DigestStatus

log = logging.getLogger(__name__)
CHUNK = 500  # bound parameters per IN (...) list
ROWS_PER_INSERT = 5_000  # matches per executemany in record_matches: bounds the parameter lists held at once
NEWS_KEPT = timedelta(days=42)  # the history of a source's new listings that alerts.py learns its usual gaps from


class Writer:
    """The operations of one write transaction (see `Store.write`)."""

    def __init__(self, session: Session):
        self.session = session

    def open_digest(self, subscription_id: str, channel: str, target: str, period: str, now: datetime, *,
                    allow_empty: bool) -> int | None:
        """The digest of a period with every unassigned delivery of (subscription, channel, target)
        moved into it; None when the period already has a digest, or it would be empty."""
        conn = self.session.connection()
        digest_id = conn.execute(_new_digest(conn.dialect.name), {
            "subscription": subscription_id, "channel": channel, "target": target, "period": period, "created": now,
            "next_try": now}).scalar_one_or_none()
        if digest_id is None:
            return None  # another sender, or an earlier run, made this period's digest
        where = {"sub": subscription_id, "chan": channel, "tgt": target, "digest": digest_id}
        moved = conn.execute(_TAKE_WAITING, where).rowcount
        empty = moved == 0 and not allow_empty
        status = DigestStatus.EMPTY if empty else DigestStatus.PENDING
        conn.execute(_DIGEST_SIZE, {"digest": digest_id, "moved": moved, "new_status": status})
        return None if empty else digest_id

    def open_many(self, wanted: list[tuple[str, str, str, str, bool]], now: datetime) -> list[int]:
        """`open_digest` for each (subscription, channel, target, period, allow_empty), set-based: one
        multi-row INSERT, one executemany moving the waiting deliveries, one UPDATE sizing the new digests
        per CHUNK. The ids of the digests opened (not those a period already had, nor empty ones)."""
        if not wanted:
            return []
        conn = self.session.connection()
        allow_empty = {(sub, channel, target, period): empty for sub, channel, target, period, empty in wanted}
        if conn.dialect.name == "postgresql":  # four arrays, not a VALUES list of 6,000 parameters: ~12 ms, not ~100
            subs, channels, targets, periods, _ = zip(*wanted, strict=True)
            rows = conn.execute(_new_digests_unnested(), {"subscriptions": list(subs), "channels": list(channels),
                                                          "targets": list(targets), "periods": list(periods),
                                                          "now": now})
        else:
            rows = conn.execute(_new_digests(conn.dialect.name), [
                {"subscription": sub, "channel": channel, "target": target, "period": period, "created": now,
                 "next_try": now} for sub, channel, target, period, _ in wanted])
        # Ids of rows the database just made: never None (the column's type allows it for rows not yet inserted).
        made = [(cast(int, digest_id), sub, channel, target, period)
                for digest_id, sub, channel, target, period in rows]
        if not made:
            return []  # another sender, or an earlier run, made these periods' digests
        ids = [digest_id for digest_id, *_ in made]
        for start in range(0, len(ids), CHUNK):  # one joined UPDATE per chunk, not a statement per digest
            conn.execute(_TAKE_WAITING_FOR, {"ids": ids[start:start + CHUNK]})
        may_be_empty = [digest_id for digest_id, sub, channel, target, period in made
                        if not allow_empty[(sub, channel, target, period)]]
        empty: set[int] = set()
        for start in range(0, len(ids), CHUNK):
            conn.execute(_SIZE_DIGESTS, {"ids": ids[start:start + CHUNK]})
        for start in range(0, len(may_be_empty), CHUNK):
            empty.update(cast(int, digest_id) for (digest_id,) in conn.execute(
                _EMPTY_DIGESTS, {"ids": may_be_empty[start:start + CHUNK]}))
        return [digest_id for digest_id in ids if digest_id not in empty]

    def suppress(self, subscription_id: str, target: str, now: datetime) -> int:
        """Record that `target` left the subscription (idempotent: the first time is kept) and cancel
        what was on its way to it: its pending digests (not one being sent) and their deliveries, and
        the deliveries still waiting for a digest. How many digests were cancelled."""
        conn = self.session.connection()
        conn.execute(_new_suppression(conn.dialect.name),
                     {"subscription": subscription_id, "target": target, "since": now})
        where = {"sub": subscription_id, "tgt": target}
        cancelled = [digest_id for (digest_id,) in conn.execute(_CANCEL_DIGESTS, where)]
        for start in range(0, len(cancelled), CHUNK):
            conn.execute(_CANCEL_DIGEST_DELIVERIES, {"ids": cancelled[start:start + CHUNK]})
        conn.execute(_CANCEL_WAITING, where)
        return len(cancelled)

    def queued_targets(self) -> set[tuple[str, str, str]]:
        """(subscription, channel, target) of everything still on its way: pending digests (retrying ones
        too) and deliveries waiting for their period's digest."""
        digests = self.session.exec(select(col(DigestRow.subscription), col(DigestRow.channel),
                                           col(DigestRow.target))
                                    .where(col(DigestRow.status) == DigestStatus.PENDING).distinct()).all()
        waiting = self.session.exec(select(col(DeliveryRow.subscription), col(DeliveryRow.channel),
                                           col(DeliveryRow.target))
                                    .where(col(DeliveryRow.digest_id).is_(None),
                                           col(DeliveryRow.status) == DeliveryStatus.PENDING).distinct()).all()
        return {(sub, channel, target) for sub, channel, target in [*digests, *waiting]}

    def cancel_queued(self, subscription_id: str, channel: str | None, target: str | None, reason: str, *,
                      failed_too: bool = False, ids: list[int] | None = None) -> tuple[int, int]:
        """Cancel what is on its way to (subscription, channel, target) (None: any): its pending digests
        (with `failed_too`, its failed ones too; with `ids`, only those digests) and their deliveries, and
        (without `ids`) the deliveries still waiting for a digest. The rows stay, marked `cancelled`
        with `reason`. (digests, waiting deliveries) cancelled."""
        statuses = [DigestStatus.PENDING, *([DigestStatus.FAILED] if failed_too else [])]
        where = [col(DigestRow.subscription) == subscription_id, col(DigestRow.status).in_(statuses)]
        waiting_where = [col(DeliveryRow.subscription) == subscription_id, col(DeliveryRow.digest_id).is_(None),
                         col(DeliveryRow.status) == DeliveryStatus.PENDING]
        if channel is not None:
            where.append(col(DigestRow.channel) == channel)
            waiting_where.append(col(DeliveryRow.channel) == channel)
        if target is not None:
            where.append(col(DigestRow.target) == target)
            waiting_where.append(col(DeliveryRow.target) == target)
        if ids is not None:
            where.append(col(DigestRow.id).in_(ids))
        conn = self.session.connection()
        cancelled = [digest_id for (digest_id,) in conn.execute(
            update(DigestRow).where(*where).values(status=DigestStatus.CANCELLED, lease_until=None,
                                                   last_error=reason).returning(col(DigestRow.id)))]
        for start in range(0, len(cancelled), CHUNK):
            conn.execute(update(DeliveryRow).where(col(DeliveryRow.digest_id).in_(cancelled[start:start + CHUNK]),
                                                   col(DeliveryRow.status).in_([DeliveryStatus.PENDING,
                                                                                DeliveryStatus.FAILED]))
                         .values(status=DeliveryStatus.CANCELLED))
        waiting = 0 if ids is not None else conn.execute(
            update(DeliveryRow).where(*waiting_where).values(status=DeliveryStatus.CANCELLED)).rowcount
        return len(cancelled), waiting

    def reroute_failed(self, digest_id: int, targets: list[tuple[str, str]], reason: str) -> int:
        """A failed digest whose target has left its subscription: its papers go to the subscription's
        current `targets` instead, as deliveries waiting for a digest (their original time kept, so the
        next send pass takes them without waiting for a new period; a target that has a paper already
        keeps what it has). The digest is cancelled with `reason`. How many deliveries were made."""
        conn = self.session.connection()
        subscription = _digest_subscription(conn, digest_id)
        papers = conn.execute(select(col(DeliveryRow.paper_id), col(DeliveryRow.created))
                              .where(col(DeliveryRow.digest_id) == digest_id)).all()
        made = 0
        insert = _new_delivery(conn.dialect.name)
        for paper_id, created in papers:
            for channel, target in targets:
                made += conn.execute(insert, {"subscription": subscription,
                                              "paper_id": paper_id, "channel": channel, "target": target,
                                              "status": DeliveryStatus.PENDING, "created": created}).rowcount
        self.cancel_queued(subscription, None, None, reason, failed_too=True, ids=[digest_id])
        return made

    def rename_subscription(self, old: str, new: str) -> dict[str, int]:
        """Move every row of subscription id `old` to `new` (matches, deliveries, digests, votes, readers
        who left): its history follows a rename. StoreError when `new` has rows of its own (a subscription
        of that id existed): mixing two histories is not a rename. Rows moved, by table."""
        conn = self.session.connection()
        tables = (MatchRow, DeliveryRow, DigestRow, VoteRow, SuppressionRow)
        for table in tables:
            if conn.execute(select(func.count()).select_from(table).where(col(table.subscription) == new)).scalar():
                raise StoreError(f"the database already has history under the id {new!r} ({table.__tablename__} "
                                 f"rows): a subscription of that name existed; choose another name")
        moved = {}
        for table in tables:
            moved[str(table.__tablename__)] = conn.execute(
                update(table).where(col(table.subscription) == old).values(subscription=new)).rowcount
        return moved

    def unsuppress(self, subscription_id: str, target: str) -> bool:
        """The target may get the subscription again (from the next matched paper on; what was cancelled
        stays cancelled). False: it was not suppressed."""
        row = self.session.get(SuppressionRow, (subscription_id, target))
        if row is None:
            return False
        self.session.delete(row)
        return True

    def record_vote(self, subscription_id: str, target: str, paper: str, vote: str, now: datetime) -> None:
        """The vote of (subscription, target, paper), replacing an earlier one (an upsert: two readers'
        clicks at the same moment cannot both insert)."""
        conn = self.session.connection()
        conn.execute(_upsert_vote(conn.dialect.name), {"subscription": subscription_id, "target": target,
                                                       "paper": paper, "vote": vote, "at": now})

    def keep_embeddings(self, model: str, vectors: dict[str, bytes]) -> None:
        """Papers' embeddings under `model`; one already stored stays (two polls may embed one paper)."""
        if vectors:
            conn = self.session.connection()
            conn.execute(_insert_embedding(conn.dialect.name),
                         [{"model": model, "paper": key, "vector": vector} for key, vector in vectors.items()])

    def remove_vote(self, subscription_id: str, target: str, paper: str) -> bool:
        """Undo a vote; False when there was none."""
        row = self.session.get(VoteRow, (subscription_id, target, paper))
        if row is None:
            return False
        self.session.delete(row)
        return True

    def beat(self, host: str, pid: int, started_at: datetime, now: datetime) -> None:
        """The daemon (host, pid) is alive at `now` (an upsert: its first beat inserts the row)."""
        conn = self.session.connection()
        conn.execute(_upsert_heartbeat(conn.dialect.name),
                     {"host": host, "pid": pid, "started_at": started_at, "beat_at": now})

    def forget_heartbeat(self, host: str, pid: int) -> bool:
        """The daemon (host, pid) stopped; False when it had no row."""
        row = self.session.get(HeartbeatRow, (host, pid))
        if row is None:
            return False
        self.session.delete(row)
        return True

    # --- subscribe requests (double opt-in) ---------------------------------------------------------

    def request_confirmation(self, subscription_id: str, query: str, target: str, now: datetime, per_day: int,
                             within: timedelta) -> ConfirmationRecord | None:
        """A new request, or None: `target` had `per_day` requests in the last 24 hours already, or the
        same request is waiting, made less than `within` ago (one mail for a form sent from three tabs).
        Requests of one address wait for each other (SQLite: the write lock; PostgreSQL: an advisory lock
        on the address), so the count and the insert are one step."""
        conn = self.session.connection()
        if conn.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.sha256(target.encode("utf-8")).digest()[:8], "big", signed=True)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        mine = col(ConfirmationRow.target) == target
        asked = conn.execute(select(func.count()).select_from(ConfirmationRow).where(
            mine, col(ConfirmationRow.requested_at) > now - timedelta(days=1))).scalar_one()
        if asked >= per_day:
            return None
        waiting = conn.execute(select(col(ConfirmationRow.id)).where(
            mine, col(ConfirmationRow.subscription) == subscription_id, col(ConfirmationRow.query) == query,
            col(ConfirmationRow.status) != ConfirmationStatus.CONFIRMED,
            col(ConfirmationRow.requested_at) > now - within).limit(1)).first()
        if waiting is not None:
            return None
        row = ConfirmationRow(subscription=subscription_id, query=query, target=target, requested_at=now)
        self.session.add(row)
        self.session.flush()
        return confirmation_record(row)

    def claim_confirmations(self, now: datetime, lease: timedelta, *, ids: list[int] | None = None,
                            since: datetime | None = None) -> list[ConfirmationRecord]:
        """Take the requests whose mail is not sent and that no live sender holds (those `ids`, or those
        made after `since`), until now + lease; each one a caller gets is its alone to send."""
        claimable = or_(col(ConfirmationRow.status) == ConfirmationStatus.PENDING,
                        and_(col(ConfirmationRow.status) == ConfirmationStatus.SENDING,
                             col(ConfirmationRow.lease_until) < now))
        wanted = [claimable]
        if ids is not None:
            wanted.append(col(ConfirmationRow.id).in_(ids))
        if since is not None:
            wanted.append(col(ConfirmationRow.requested_at) > since)
        taken = [row_id for (row_id,) in self.session.connection().execute(
            update(ConfirmationRow).where(*wanted).values(status=ConfirmationStatus.SENDING, lease_until=now + lease)
            .returning(col(ConfirmationRow.id)))]
        if not taken:
            return []
        rows = self.session.exec(select(ConfirmationRow).where(col(ConfirmationRow.id).in_(taken))
                                 .order_by(col(ConfirmationRow.id))).all()
        return [confirmation_record(row) for row in rows]

    def confirmation_sent(self, confirmation_id: int, now: datetime, *, sent: bool) -> None:
        """After the claim: the mail went (`sent`), or it did not and the request waits for the next try."""
        values = {"status": ConfirmationStatus.SENT, "sent_at": now, "lease_until": None} if sent else \
            {"status": ConfirmationStatus.PENDING, "lease_until": None}
        self.session.connection().execute(update(ConfirmationRow).where(
            col(ConfirmationRow.id) == confirmation_id,
            col(ConfirmationRow.status) == ConfirmationStatus.SENDING).values(**values))

    def confirm(self, confirmation_id: int, now: datetime) -> ConfirmationRecord | None:
        """Mark it confirmed (the first time is kept); None when there is no such request (any more)."""
        row = self.session.get(ConfirmationRow, confirmation_id)
        if row is None:
            return None
        if row.status != ConfirmationStatus.CONFIRMED:
            row.status, row.confirmed_at, row.lease_until = ConfirmationStatus.CONFIRMED, now, None
            self.session.add(row)
            self.session.flush()
        return confirmation_record(row)

    def drop_confirmations(self, before: datetime) -> int:
        """Forget the requests made before `before`, whatever became of them; how many."""
        return self.session.connection().execute(
            delete(ConfirmationRow).where(col(ConfirmationRow.requested_at) < before)).rowcount

    def record_papers(self, source: str, papers: list[Paper], now: datetime) -> list[tuple[int, Paper]]:
        """Store or update each paper; return (row id, paper) of those never seen before.

        Identity: the bare arXiv id, else the title slug; a title-only paper and a paper
        with an id are the same when their slugs agree. `update_only` papers (new versions) only
        update a stored paper and are never inserted.
        """
        merged: dict[str, Paper] = {}
        for paper in papers:
            earlier = merged.get(paper.key)
            if earlier is not None and not earlier.update_only:
                paper.update_only = False  # announced as new in this very batch: still new
            merged[paper.key] = paper
        index = PaperIndex(self._existing(list(merged.values())))
        new: list[tuple[PaperRow, Paper]] = []
        for paper in merged.values():
            row = index.find(paper)
            if row is not None:
                merge_into(row, paper, now)
                index.add(row)  # it may just have gained its arXiv id
            elif paper.update_only:
                log.debug("%s: %s is a new version of a paper we never stored; not a new paper", source, paper.key)
            else:
                row = self._insert(paper, now)
                new.append((row, paper))
                index.add(row)
        self.session.flush()
        recorded: list[tuple[int, Paper]] = []
        for inserted, paper in new:
            assert inserted.id is not None  # flushed: the database gave it its id
            paper.first_seen = now
            recorded.append((inserted.id, paper))
        return recorded

    def _existing(self, papers: list[Paper]) -> list[PaperRow]:
        """The stored rows that share an arXiv id or a title slug with `papers` (both are indexed)."""
        rows: dict[int, PaperRow] = {}
        for start in range(0, len(papers), CHUNK):
            chunk = papers[start:start + CHUNK]
            ids = [p.arxiv_id for p in chunk if p.arxiv_id]
            slugs = [p.slug for p in chunk]
            for row in self.session.exec(select(PaperRow).where(
                    or_(col(PaperRow.arxiv_id).in_(ids), col(PaperRow.slug).in_(slugs)))).all():
                assert row.id is not None  # read from the table
                rows[row.id] = row
        return list(rows.values())

    def _insert(self, paper: Paper, now: datetime) -> PaperRow:
        row = PaperRow(arxiv_id=paper.arxiv_id, slug=paper.slug, title=paper.title, first_seen=now, updated=now)
        merge_into(row, paper, now)
        self.session.add(row)
        return row

    def record_matches(self, matches: list[tuple[int, Match]], targets: dict[str, list[tuple[str, str]]],
                       now: datetime) -> int:
        """Write each match and its ledger rows: one delivery per (channel, target) of the subscription.

        Set-based: one executemany per batch of rows, never an ORM object per row (at 80,000 matches
        those cost 0.2 ms and 6 KB each, inside the write transaction)."""
        conn = self.session.connection()
        hits_json: dict[tuple[Hit, ...], str] = {}  # the matcher shares hit tuples between queries
        for start in range(0, len(matches), ROWS_PER_INSERT):
            chunk = matches[start:start + ROWS_PER_INSERT]
            _INSERT_MATCH.run(conn, [
                (match.subscription_id, paper_id, match.score, _hits_json(match.hits, hits_json), now)
                for paper_id, match in chunk])
            _INSERT_DELIVERY.run(conn, [
                (match.subscription_id, paper_id, channel, target, DeliveryStatus.PENDING.value, now)
                for paper_id, match in chunk for channel, target in targets.get(match.subscription_id, [])])
        return len(matches)

    def source_polled(self, name: str, now: datetime, *, seen: int = 0, new: int = 0,
                      validators: dict[str, tuple[str | None, str | None]] | None = None,
                      error: str | None = None) -> None:
        state = self.session.get(SourceState, name) or SourceState(name=name)
        state.last_poll = now
        state.polls = (state.polls or 0) + 1
        if error is None:
            state.last_success, state.papers_seen, state.last_new = now, state.papers_seen + seen, new
            state.failures = 0
            if new:
                self.session.merge(SourceNewsRow(source=name, at=now, new=new))  # a second poll at the same `now`
                self.session.connection().execute(_PRUNE_NEWS, {"source": name, "before": now - NEWS_KEPT})
            if validators is not None:
                # Only the URLs of this poll: dated URLs (hf_daily's days) would otherwise pile up forever.
                state.validators = json.dumps(validators)
        else:
            state.last_error, state.last_error_at = error, now
            state.failures = (state.failures or 0) + 1
            state.failed_polls = (state.failed_polls or 0) + 1
        self.session.add(state)


# Statements built once: building them per digest cost ~1 ms, ten times the SQL.
@cache
def _new_digest(dialect: str) -> ReturningInsert[int | None]:
    # ON CONFLICT DO NOTHING is not standard SQL: each dialect's own INSERT construct has it.
    inserts: dict[str, Callable[[type[DigestRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect](DigestRow).on_conflict_do_nothing().returning(col(DigestRow.id))


@cache
def _new_digests(dialect: str) -> ReturningInsert[int | None, str, str, str, str]:
    inserts: dict[str, Callable[[type[DigestRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect](DigestRow).on_conflict_do_nothing().returning(
        col(DigestRow.id), col(DigestRow.subscription), col(DigestRow.channel), col(DigestRow.target),
        col(DigestRow.period))


@cache
def _new_digests_unnested() -> ReturningInsert[int | None, str, str, str, str]:
    """`_new_digests` on PostgreSQL: the rows as one array per column, unnested into an INSERT ... SELECT
    (the other columns get their defaults, as in `_new_digests`: from_select includes them)."""
    table = DigestRow.__table__  # type: ignore[attr-defined]
    text_array = postgresql.ARRAY(table.c.subscription.type)
    rows = func.unnest(bindparam("subscriptions", type_=text_array), bindparam("channels", type_=text_array),
                       bindparam("targets", type_=text_array), bindparam("periods", type_=text_array)
                       ).table_valued("subscription", "channel", "target", "period").render_derived()
    now = bindparam("now", type_=table.c.created.type)
    return (postgresql.insert(DigestRow)
            .from_select(["subscription", "channel", "target", "period", "created", "next_try"],
                         sa_select(rows.c.subscription, rows.c.channel, rows.c.target, rows.c.period, now, now))
            .on_conflict_do_nothing()
            .returning(col(DigestRow.id), col(DigestRow.subscription), col(DigestRow.channel),
                       col(DigestRow.target), col(DigestRow.period)))


@cache
def _new_suppression(dialect: str) -> sqlite.Insert | postgresql.Insert:
    inserts: dict[str, Callable[[type[SuppressionRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect](SuppressionRow).on_conflict_do_nothing()


@cache
def _new_delivery(dialect: str) -> sqlite.Insert | postgresql.Insert:
    inserts: dict[str, Callable[[type[DeliveryRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect](DeliveryRow).on_conflict_do_nothing()


def _digest_subscription(conn: Connection, digest_id: int) -> str:
    subscription: str = conn.execute(select(col(DigestRow.subscription)).where(col(DigestRow.id) == digest_id)
                                     ).scalar_one()
    return subscription


@cache
def _upsert_vote(dialect: str) -> sqlite.Insert | postgresql.Insert:
    inserts: dict[str, Callable[[type[VoteRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    insert = inserts[dialect](VoteRow)
    return insert.on_conflict_do_update(index_elements=["subscription", "target", "paper"],
                                        set_={"vote": insert.excluded.vote, "at": insert.excluded.at})


def _insert_embedding(dialect: str) -> sqlite.Insert | postgresql.Insert:
    inserts: dict[str, Callable[[type[EmbeddingRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    return inserts[dialect](EmbeddingRow).on_conflict_do_nothing(index_elements=["model", "paper"])


def _upsert_heartbeat(dialect: str) -> sqlite.Insert | postgresql.Insert:
    inserts: dict[str, Callable[[type[HeartbeatRow]], sqlite.Insert | postgresql.Insert]] = {
        "sqlite": sqlite.insert, "postgresql": postgresql.insert}
    insert = inserts[dialect](HeartbeatRow)
    return insert.on_conflict_do_update(index_elements=["host", "pid"],
                                        set_={"started_at": insert.excluded.started_at,
                                              "beat_at": insert.excluded.beat_at})


def _hits_json(hits: tuple[Hit, ...], made: dict[tuple[Hit, ...], str]) -> str:
    found = made.get(hits)
    if found is None:
        found = made[hits] = json.dumps([[h.text, h.field, h.topic] for h in hits])
    return found


class _BulkInsert:
    """An INSERT of some columns, compiled once per dialect and run with the driver's own executemany,
    each column's values converted as SQLAlchemy would (a datetime on SQLite). Its per-row parameter
    handling cost more than SQLite's insert itself: ~60% of recording 180,000 rows at 10,000 subscriptions."""

    def __init__(self, table: type[SQLModel], columns: tuple[str, ...]):
        self.statement, self.columns = insert(table), columns
        self._compiled: dict[str, tuple[SQLCompiler, list[Callable[[Any], Any] | None]]] = {}

    def run(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert `rows` (values in `columns` order)."""
        if not rows:
            return
        dialect = conn.dialect
        compiled, processors = self._compile(dialect)
        for k, process in enumerate(processors):
            if process is not None:  # each distinct value converted once (`created` is one `now` per poll)
                converted = {value: process(value) for value in {row[k] for row in rows}}
                rows = [(*row[:k], converted[row[k]], *row[k + 1:]) for row in rows]
        if dialect.name == "postgresql":  # COPY: one stream, where executemany is a statement per row
            return self._copy(conn, dialect, rows)
        params: list[Any]
        if not compiled.positional:
            params = [dict(zip(self.columns, row, strict=True)) for row in rows]
        elif list(compiled.positiontup or ()) == list(self.columns):
            params = rows
        else:
            order = [self.columns.index(name) for name in compiled.positiontup or ()]
            params = [tuple(row[k] for k in order) for row in rows]
        driver = conn.connection.dbapi_connection
        assert driver is not None  # a connection inside a transaction holds its driver's connection
        cursor = driver.cursor()
        try:
            cursor.executemany(compiled.string, params)
        except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it, so Store.guarded explains it
            raise DBAPIError.instance(compiled.string, params[:1], exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()

    def _copy(self, conn: Connection, dialect: Dialect, rows: list[tuple[Any, ...]]) -> None:
        """psycopg's COPY FROM STDIN (its cursor's `copy`), each value adapted as psycopg adapts parameters:
        recording 90,000 matches and their deliveries took 3.9 s as INSERTs, 2.6 s as COPY."""
        quote = dialect.identifier_preparer.quote
        sql = f"COPY {quote(self.statement.table.name)} ({', '.join(quote(c) for c in self.columns)}) FROM STDIN"
        driver = conn.connection.dbapi_connection
        assert driver is not None  # a connection inside a transaction holds its driver's connection
        cursor: Any = driver.cursor()  # psycopg's: `copy` is not in the DB-API
        try:
            with cursor.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, rows[:1], exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect) -> tuple[SQLCompiler, list[Callable[[Any], Any] | None]]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=list(self.columns))
            assert isinstance(compiled, SQLCompiler)  # an INSERT compiles with the dialect's SQL compiler
            types = {name: bind.type for name, bind in compiled.binds.items()}
            found = self._compiled[dialect.name] = (compiled, [
                types[name].dialect_impl(dialect).bind_processor(dialect) for name in self.columns])
        return found


_INSERT_MATCH = _BulkInsert(MatchRow, ("subscription", "paper_id", "score", "hits", "created"))
_INSERT_DELIVERY = _BulkInsert(DeliveryRow, ("subscription", "paper_id", "channel", "target", "status", "created"))
_PRUNE_NEWS = delete(SourceNewsRow).where(col(SourceNewsRow.source) == bindparam("source"),
                                          col(SourceNewsRow.at) < bindparam("before"))
_CANCEL_DIGESTS = update(DigestRow).where(
    col(DigestRow.subscription) == bindparam("sub"), col(DigestRow.target) == bindparam("tgt"),
    col(DigestRow.status) == DigestStatus.PENDING).values(
    status=DigestStatus.CANCELLED, lease_until=None).returning(col(DigestRow.id))
_CANCEL_DIGEST_DELIVERIES = update(DeliveryRow).where(
    col(DeliveryRow.digest_id).in_(bindparam("ids", expanding=True)),
    col(DeliveryRow.status) == DeliveryStatus.PENDING).values(status=DeliveryStatus.CANCELLED)
_CANCEL_WAITING = update(DeliveryRow).where(
    col(DeliveryRow.subscription) == bindparam("sub"), col(DeliveryRow.target) == bindparam("tgt"),
    col(DeliveryRow.digest_id).is_(None), col(DeliveryRow.status) == DeliveryStatus.PENDING).values(
    status=DeliveryStatus.CANCELLED)
_TAKE_WAITING = update(DeliveryRow).where(
    col(DeliveryRow.subscription) == bindparam("sub"), col(DeliveryRow.channel) == bindparam("chan"),
    col(DeliveryRow.target) == bindparam("tgt"), col(DeliveryRow.digest_id).is_(None),
    col(DeliveryRow.status) == DeliveryStatus.PENDING).values(digest_id=bindparam("digest"))
# The deliveries waiting for each of the digests `ids`, taken by them in one statement (UPDATE ... FROM:
# PostgreSQL, and SQLite since 3.33). On PostgreSQL a statement per digest cost a round trip each.
_TAKE_WAITING_FOR = update(DeliveryRow).where(
    col(DigestRow.id).in_(bindparam("ids", expanding=True)),
    col(DeliveryRow.subscription) == col(DigestRow.subscription), col(DeliveryRow.channel) == col(DigestRow.channel),
    col(DeliveryRow.target) == col(DigestRow.target), col(DeliveryRow.digest_id).is_(None),
    col(DeliveryRow.status) == DeliveryStatus.PENDING).values(digest_id=col(DigestRow.id))
_SIZE_DIGESTS = update(DigestRow).where(col(DigestRow.id).in_(bindparam("ids", expanding=True))).values(
    papers=select(func.count()).select_from(DeliveryRow).where(col(DeliveryRow.digest_id) == col(DigestRow.id))
    .scalar_subquery())
_EMPTY_DIGESTS = update(DigestRow).where(col(DigestRow.id).in_(bindparam("ids", expanding=True)),
                                         col(DigestRow.papers) == 0).values(
    status=DigestStatus.EMPTY).returning(col(DigestRow.id))
_DIGEST_SIZE = update(DigestRow).where(col(DigestRow.id) == bindparam("digest")).values(
    papers=bindparam("moved"), status=bindparam("new_status"))

