"""The database: SQLModel tables and the Store API. The only module that imports sqlmodel.

Tables: `paper` (one row per paper whatever its sources), `source_state` (per source: last success,
last error, conditional-GET validators), `match` (subscription x paper, with score and hits),
`delivery` (the ledger: subscription x paper x channel x target, created with the match), and
`digest` (one send: subscription x channel x target x period, grouping deliveries).

Write transactions on SQLite start with BEGIN IMMEDIATE so that two processes queue on the busy
timeout instead of failing when a read transaction upgrades to a write.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Iterator

from sqlalchemy import bindparam, event, func, inspect, or_, select as sa_select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Field, Session, SQLModel, UniqueConstraint, create_engine, select

from .errors import StoreError
from .identity import PaperIndex, merge_into
from .models import Hit, Match, Paper, SourceMemory

log = logging.getLogger(__name__)
CHUNK = 500  # bound parameters per IN (...) list


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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


class MatchRow(SQLModel, table=True):
    __tablename__ = "match"
    __table_args__ = (UniqueConstraint("subscription", "paper_id"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription: str
    paper_id: int = Field(foreign_key="paper.id", index=True)
    score: float = 0.0
    hits: str = "[]"
    created: datetime


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("subscription", "paper_id", "channel", "target"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription: str = Field(index=True)
    paper_id: int = Field(foreign_key="paper.id")
    channel: str  # email | slack (the transport is chosen when sending)
    target: str  # an address, a channel name
    status: str = Field(default="pending", index=True)  # pending | sent | failed | skipped
    digest_id: int | None = Field(default=None, foreign_key="digest.id", index=True)
    created: datetime


class DigestRow(SQLModel, table=True):
    __tablename__ = "digest"
    __table_args__ = (UniqueConstraint("subscription", "channel", "target", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    subscription: str
    channel: str
    target: str
    period: str
    status: str = Field(default="pending", index=True)  # pending | sending | sent | failed | empty
    papers: int = 0
    attempts: int = 0
    next_try: datetime | None = None
    lease_until: datetime | None = None
    last_error: str | None = None
    message_id: str | None = None
    created: datetime
    sent_at: datetime | None = None


_DIGEST_PAPERS = (sa_select(DeliveryRow.digest_id, DeliveryRow.paper_id)
                  .where(DeliveryRow.digest_id.in_(bindparam("ids", expanding=True))))


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were stored in UTC."""
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def paper_from_row(row: PaperRow) -> Paper:
    return Paper(title=row.title, abstract=row.abstract, arxiv_id=row.arxiv_id,
                 authors=tuple(json.loads(row.authors)), published=_aware(row.published), url=row.url,
                 upvotes=row.upvotes, ai_summary=row.ai_summary, ai_keywords=tuple(json.loads(row.ai_keywords)),
                 github=row.github, project_page=row.project_page, sources=tuple(json.loads(row.sources)),
                 first_seen=_aware(row.first_seen))


class Store:
    """Open with `Store(url)`; `Store.create(url)` makes the tables (used by init/first run)."""

    def __init__(self, url: str, *, busy_timeout: float = 10.0):
        self.url = url
        self.engine = create_engine(url, connect_args=_connect_args(url, busy_timeout))
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine, busy_timeout)

    def create_tables(self) -> None:
        with self._guard("create the tables"):
            SQLModel.metadata.create_all(self.engine)

    @classmethod
    def open_existing(cls, url: str, *, busy_timeout: float = 10.0) -> "Store":
        """Open a database `digestbot init` made; refuse a missing, empty or corrupt one.

        Starting from an empty database would re-send every paper still listed (the history is the
        ledger), so only `init` creates one, on purpose. SQLite would create a missing file silently,
        hence the check before connecting."""
        path = _sqlite_path(url)
        if path is not None and not Path(path).exists():
            raise StoreError(f"no database at {path}: run `digestbot init` to create one; if one existed, restore "
                             f"it from a backup (starting empty would send history again)")
        store = cls(url, busy_timeout=busy_timeout)
        store.verify()
        return store

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def has_tables(self) -> bool:
        with self._guard("read the tables"):
            return not {"paper", "delivery", "digest"} - set(inspect(self.engine).get_table_names())

    def verify(self) -> None:
        with self._guard("read the tables"):
            missing = {"paper", "delivery", "digest"} - set(inspect(self.engine).get_table_names())
            if missing:
                raise StoreError(f"{self._where()} is not a digestbot database (no {', '.join(sorted(missing))} "
                                 f"table): restore it from a backup; to start a new one on purpose run "
                                 f"`digestbot init` (--force to set a damaged file aside)")
            if self.engine.dialect.name == "sqlite":
                with self.engine.connect() as conn:
                    result = conn.exec_driver_sql("PRAGMA quick_check").scalar()
                if result != "ok":
                    raise StoreError(f"{self._where()} is damaged ({result}): restore it from a backup, or "
                                     f"`digestbot init --force` to start a new one")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(f"database busy: another process held {self._where()} longer than the busy "
                                 f"timeout while trying to {doing}; nothing was changed, try again") from None
            raise StoreError(f"cannot {doing} in {self._where()}: {exc.orig}") from None
        except DatabaseError as exc:
            raise StoreError(f"cannot {doing} in {self._where()}: {exc.orig} (is it a digestbot database? "
                             f"restore a backup, or `digestbot init` a new one)") from None

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator["Writer"]:
        """One write transaction (BEGIN IMMEDIATE on SQLite); commits on success, rolls back on error."""
        with self._guard("write"), self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with Session(bind=conn) as session, session.begin():
                    yield Writer(session)
            finally:
                conn.info.pop("write", None)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._guard("read"), Session(self.engine) as session:
            yield session

    # --- reading -------------------------------------------------------------------------------

    def source_memory(self, name: str) -> SourceMemory:
        with self.read() as s:
            state = s.get(SourceState, name)
        if state is None:
            return SourceMemory()
        validators = {url: tuple(v) for url, v in json.loads(state.validators).items()}
        return SourceMemory(last_success=_aware(state.last_success), validators=validators)

    def source_states(self) -> dict[str, SourceState]:
        with self.read() as s:
            states = {st.name: st for st in s.exec(select(SourceState)).all()}
        for st in states.values():
            st.last_poll, st.last_success = _aware(st.last_poll), _aware(st.last_success)
            st.last_error_at = _aware(st.last_error_at)
        return states

    def papers_from(self, source: str) -> int:
        """How many distinct stored papers `source` has listed (a scan: for `status`, not hot paths)."""
        with self.read() as s:
            return s.exec(select(func.count()).select_from(PaperRow)
                          .where(PaperRow.sources.contains(json.dumps(source)))).one()

    def papers(self, days: float | None = None, limit: int | None = None) -> list[Paper]:
        with self.read() as s:
            query = select(PaperRow).order_by(PaperRow.first_seen.desc(), PaperRow.id.desc())
            if days is not None:
                query = query.where(PaperRow.first_seen >= utcnow() - timedelta(days=days))
            if limit:
                query = query.limit(limit)
            return [paper_from_row(r) for r in s.exec(query).all()]

    def papers_by_keys(self, keys: list[str]) -> list[Paper]:
        """Stored papers by bare arXiv id or title slug."""
        with self.read() as s:
            rows = s.exec(select(PaperRow).where(or_(PaperRow.arxiv_id.in_(keys), PaperRow.slug.in_(keys)))).all()
            return [paper_from_row(r) for r in rows]

    def count_papers(self) -> int:
        with self.read() as s:
            return s.exec(select(func.count()).select_from(PaperRow)).one()

    def delivery_counts(self) -> dict[tuple[str, str], int]:
        """(channel, status) -> number of deliveries."""
        with self.read() as s:
            rows = s.exec(select(DeliveryRow.channel, DeliveryRow.status, func.count())
                          .group_by(DeliveryRow.channel, DeliveryRow.status)).all()
        return {(c, st): n for c, st, n in rows}

    def digests(self, status: str | None = None) -> list[DigestRow]:
        with self.read() as s:
            query = select(DigestRow).order_by(DigestRow.id)
            if status:
                query = query.where(DigestRow.status == status)
            return list(s.exec(query).all())

    def digest_matches(self, digest_id: int) -> list[Match]:
        with self.read() as s:
            rows = s.exec(select(PaperRow, MatchRow, DeliveryRow)
                          .join(DeliveryRow, DeliveryRow.paper_id == PaperRow.id)
                          .join(MatchRow, (MatchRow.paper_id == PaperRow.id)
                                & (MatchRow.subscription == DeliveryRow.subscription))
                          .where(DeliveryRow.digest_id == digest_id)).all()
        return [Match(m.subscription, paper_from_row(p), m.score,
                      tuple(Hit(*h) for h in json.loads(m.hits))) for p, m, _ in rows]

    def digest_papers(self, digest_ids: list[int]) -> dict[int, tuple[int, ...]]:
        """Digest id -> the sorted ids of its papers, for a whole claimed batch in one light query
        (the send pass loads the matches themselves once per distinct set, see sendpass.py)."""
        found: dict[int, list[int]] = {d: [] for d in digest_ids}
        with self.read() as s:
            conn = s.connection()
            for start in range(0, len(digest_ids), CHUNK):
                chunk = digest_ids[start:start + CHUNK]
                for digest_id, paper_id in conn.execute(_DIGEST_PAPERS, {"ids": chunk}):
                    found[digest_id].append(paper_id)
        return {d: tuple(sorted(papers)) for d, papers in found.items()}

    def matches_of(self, subscription: str, paper_ids: tuple[int, ...]) -> list[Match]:
        """The subscription's matches of these papers (the content of a digest, whoever gets it)."""
        with self.read() as s:
            rows = s.exec(select(PaperRow, MatchRow).join(MatchRow, MatchRow.paper_id == PaperRow.id)
                          .where(MatchRow.subscription == subscription, PaperRow.id.in_(paper_ids))).all()
        return [Match(m.subscription, paper_from_row(p), m.score,
                      tuple(Hit(*h) for h in json.loads(m.hits))) for p, m in rows]

    def pending_matches(self, subscription: str) -> list[Match]:
        """The matches of deliveries not yet in a digest (each paper once): the next digest's content."""
        with self.read() as s:
            rows = s.exec(select(PaperRow, MatchRow)
                          .join(MatchRow, MatchRow.paper_id == PaperRow.id)
                          .where(MatchRow.subscription == subscription,
                                 MatchRow.paper_id.in_(select(DeliveryRow.paper_id).where(
                                     DeliveryRow.subscription == subscription, DeliveryRow.digest_id.is_(None),
                                     DeliveryRow.status == "pending")))).all()
        return [Match(m.subscription, paper_from_row(p), m.score,
                      tuple(Hit(*h) for h in json.loads(m.hits))) for p, m in rows]

    def pending_targets(self, subscription: str) -> list[tuple[str, str, datetime]]:
        """(channel, target, oldest created) of deliveries not yet in a digest."""
        with self.read() as s:
            rows = s.exec(select(DeliveryRow.channel, DeliveryRow.target, func.min(DeliveryRow.created))
                          .where(DeliveryRow.subscription == subscription, DeliveryRow.digest_id.is_(None),
                                 DeliveryRow.status == "pending")
                          .group_by(DeliveryRow.channel, DeliveryRow.target)).all()
        return [(c, t, _aware(oldest)) for c, t, oldest in rows]

    # --- the send side of the ledger -------------------------------------------------------------

    def open_digest(self, subscription: str, channel: str, target: str, period: str,
                    now: datetime, *, allow_empty: bool = False) -> int | None:
        """Create the digest of a period and move every unassigned delivery into it, atomically.

        Returns its id, or None when the period already has a digest (or nothing to send)."""
        with self.write() as w:
            digest_id = w.insert_ignore(DigestRow, subscription=subscription, channel=channel, target=target,
                                        period=period, created=now, next_try=now)
            if digest_id is None:
                return None  # another sender, or an earlier run, made this period's digest
            moved = w.session.exec(update(DeliveryRow).where(
                DeliveryRow.subscription == subscription, DeliveryRow.channel == channel,
                DeliveryRow.target == target, DeliveryRow.digest_id.is_(None),
                DeliveryRow.status == "pending").values(digest_id=digest_id)).rowcount
            empty = moved == 0 and not allow_empty
            w.session.exec(update(DigestRow).where(DigestRow.id == digest_id)
                           .values(papers=moved, status="empty" if empty else "pending"))
            return None if empty else digest_id


class Writer:
    """The operations of one write transaction (see `Store.write`)."""

    def __init__(self, session: Session):
        self.session = session

    def insert_ignore(self, table: type[SQLModel], **values) -> int | None:
        """INSERT unless a unique constraint says the row exists; the new id, or None."""
        dialect = self.session.get_bind().dialect.name
        insert = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}[dialect]
        statement = insert(table).values(**values).on_conflict_do_nothing().returning(table.id)
        return self.session.exec(statement).scalar_one_or_none()

    def record_papers(self, source: str, papers: list[Paper], now: datetime) -> list[tuple[int, Paper]]:
        """Store or update each paper; return (row id, paper) of those never seen before.

        Identity (DESIGN 3.3): the bare arXiv id, else the title slug; a title-only paper and a paper
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
        for row, paper in new:
            paper.first_seen = now
        return [(row.id, paper) for row, paper in new]

    def _existing(self, papers: list[Paper]) -> list[PaperRow]:
        """The stored rows that share an arXiv id or a title slug with `papers` (both are indexed)."""
        rows: dict[int, PaperRow] = {}
        for start in range(0, len(papers), CHUNK):
            chunk = papers[start:start + CHUNK]
            ids = [p.arxiv_id for p in chunk if p.arxiv_id]
            slugs = [p.slug for p in chunk]
            for row in self.session.exec(select(PaperRow).where(
                    or_(PaperRow.arxiv_id.in_(ids), PaperRow.slug.in_(slugs)))).all():
                rows[row.id] = row
        return list(rows.values())

    def _insert(self, paper: Paper, now: datetime) -> PaperRow:
        row = PaperRow(arxiv_id=paper.arxiv_id, slug=paper.slug, title=paper.title, first_seen=now, updated=now)
        merge_into(row, paper, now)
        self.session.add(row)
        return row

    def record_matches(self, matches: list[tuple[int, Match]], targets: dict[str, list[tuple[str, str]]],
                       now: datetime) -> int:
        """Write each match and its ledger rows: one delivery per (channel, target) of the subscription."""
        for paper_id, match in matches:
            hits = json.dumps([[h.text, h.field, h.topic] for h in match.hits])
            self.session.add(MatchRow(subscription=match.subscription, paper_id=paper_id, score=match.score,
                                      hits=hits, created=now))
            for channel, target in targets.get(match.subscription, []):
                self.session.add(DeliveryRow(subscription=match.subscription, paper_id=paper_id,
                                             channel=channel, target=target, created=now))
        self.session.flush()
        return len(matches)

    def source_polled(self, name: str, now: datetime, *, seen: int = 0, new: int = 0,
                      validators: dict | None = None, error: str | None = None) -> None:
        state = self.session.get(SourceState, name) or SourceState(name=name)
        state.last_poll = now
        if error is None:
            state.last_success, state.papers_seen, state.last_new = now, state.papers_seen + seen, new
            if validators is not None:
                # Only the URLs of this poll: dated URLs (hf_daily's days) would otherwise pile up forever.
                state.validators = json.dumps(validators)
        else:
            state.last_error, state.last_error_at = error, now
        self.session.add(state)


def _sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for other databases and in-memory SQLite)."""
    prefix = "sqlite:///"
    rest = url[len(prefix):] if url.startswith(prefix) else ""
    return rest.split("?", 1)[0] if rest and not rest.startswith(":memory:") else None


def set_aside(path: Path) -> Path:
    """Rename a damaged SQLite file (and its -wal/-shm) to NAME.broken-TIMESTAMP; the new name."""
    aside = path.with_name(f"{path.name}.broken-{utcnow():%Y%m%d%H%M%S}")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(aside.with_name(aside.name + suffix))
    return aside


def _connect_args(url: str, busy_timeout: float) -> dict:
    return {"timeout": busy_timeout, "check_same_thread": False} if url.startswith("sqlite") else {}


def _sqlite_pragmas(engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}",
                       "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")
