"""The Store: opening a database (pragmas, guards against a busy or damaged file), reading it, and
its write transactions.

A Store hands out plain values (values.py, models.Paper/Match), never table rows. Its schema is made
by schema.py and upgraded by upkeep.py; one write transaction's operations are writer.py's, the send
side of the ledger is ledger.py's. Every failure of the database reaches callers as a StoreError that
says what was being done (`guarded`).

Write transactions on SQLite start with BEGIN IMMEDIATE so that two processes queue on the busy
timeout instead of failing when a read transaction upgrades to a write: a connection whose
`info["write"]` is set begins that way (`_sqlite_pragmas`).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Engine, Select, bindparam, event, func, inspect, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, col, create_engine, select

from ..errors import StoreError
from ..models import Hit, Match, Paper, SourceMemory
from . import schema, upkeep
from .leader import Leader
from .tables import (
    ConfirmationRow,
    DeliveryRow,
    DigestRow,
    EmbeddingRow,
    HeartbeatRow,
    MatchRow,
    PaperRow,
    SourceState,
    SuppressionRow,
    VoteRow,
    confirmation_record,
    digest_record,
    heartbeat_record,
    paper_from_row,
    source_record,
    vote_record,
)
from .upkeep import Revision, Upgraded, checkpoint_wal
from .values import (
    VOTES,
    ConfirmationRecord,
    DeliveryStatus,
    DigestRecord,
    DigestStatus,
    Heartbeat,
    SourceRecord,
    Vote,
    as_utc,
    utcnow,
)
from .writer import Writer

log = logging.getLogger(__name__)
CHUNK = 500  # bound parameters per IN (...) list
WAL_PAGES = 10_000  # SQLite checkpoints its write-ahead log at this many pages (see _sqlite_pragmas)
DUPLICATE_WITHIN = timedelta(minutes=10)  # the same subscribe request again within this: no second mail
WAL_LIMIT = WAL_PAGES * 4096  # ~40 MB: a -wal file larger than this is truncated when a send pass ends


# Typed (digest id, paper id): the IN filter leaves no row without a digest, whose digest_id is NULL.
OPEN_BATCH = 1_000  # digests opened per write transaction (Store.open_many)
_DIGEST_PAPERS = cast("Select[int, int]", sa_select(col(DeliveryRow.digest_id), col(DeliveryRow.paper_id))
                      .where(col(DeliveryRow.digest_id).in_(bindparam("ids", expanding=True))))
# A digest's content: a plain column query (an ORM load of two entities per paper cost ~0.3 ms each).
_PAPER_TABLE = SQLModel.metadata.tables[PaperRow.__tablename__]  # what PaperRow.__table__ is, typed
_MATCHES_OF = (sa_select(*_PAPER_TABLE.columns, col(MatchRow.score), col(MatchRow.hits))
               .join(MatchRow, col(MatchRow.paper_id) == col(PaperRow.id))
               .where(col(MatchRow.subscription) == bindparam("subscription"),
                      col(PaperRow.id).in_(bindparam("ids", expanding=True))))
# A batch's contents: its matches alone, and the papers not built yet (a paper's columns per match row,
# with two dates parsed each, cost more than the rest of loading).
_MATCH_ROWS = (sa_select(col(MatchRow.subscription), col(MatchRow.paper_id), col(MatchRow.score), col(MatchRow.hits))
               .where(col(MatchRow.subscription).in_(bindparam("subs", expanding=True)),
                      col(MatchRow.paper_id).in_(bindparam("ids", expanding=True))))
_PAPERS = sa_select(*_PAPER_TABLE.columns).where(col(PaperRow.id).in_(bindparam("ids", expanding=True)))


class Store:
    """One database. `Store(url)` opens it as it is; `Store.open_existing(url)` checks and upgrades it
    first, `create_tables()` makes a new one (opening.py decides which an installation needs)."""

    def __init__(self, url: str, *, busy_timeout: float = 10.0):
        self.url, self.busy_timeout = url, busy_timeout
        self.wal_limit = WAL_LIMIT
        self.engine = create_engine(url, connect_args=_connect_args(url, busy_timeout))
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine, busy_timeout)
        self._installation: str | None = None
        self._leader: Leader | None = None
        self._leader_made = threading.Lock()

    def create_tables(self) -> None:
        """The whole schema at once: a process killed meanwhile leaves no half-made database (schema.py).

        A missing SQLite file is built beside its place and moved in; an existing file (one an older
        version left empty) and other databases are completed in one transaction."""
        path = sqlite_path(self.url)
        if path is None or Path(path).exists():
            self._complete_schema()
            return
        schema.create_file(Path(path), self._build_in)
        self.engine.dispose()  # connections opened before (if any) saw no file

    def _build_in(self, temporary: Path) -> None:
        with Store(f"sqlite:///{temporary}", busy_timeout=self.busy_timeout) as building:
            building._complete_schema()

    def _complete_schema(self) -> None:
        with self.guarded("create the tables"), self.engine.connect() as conn:
            conn.info["write"] = True  # BEGIN IMMEDIATE on SQLite: two processes take turns
            try:
                with conn.begin():
                    schema.complete(conn)
            finally:
                conn.info.pop("write", None)

    @property
    def installation(self) -> str:
        """This database's random id (in every Message-ID); one an older version made gets it here."""
        if self._installation is None:
            if self._read_installation() is None:
                self._complete_schema()
            self._installation = self._read_installation()
            if self._installation is None:
                raise StoreError(f"{self._where()} has no installation id even after adding it: is its schema "
                                 f"older (`digestbot db upgrade`) or the database read-only?")
        return self._installation

    def _read_installation(self) -> str | None:
        with self.guarded("read the installation id"), self.engine.connect() as conn:
            return schema.installation_id(conn)

    @classmethod
    def open_existing(cls, url: str, *, busy_timeout: float = 10.0, upgrade: bool = True) -> Store:
        """Open a database `digestbot init` made; refuse a missing, empty or corrupt one. One an older
        digestbot made is upgraded to this version's schema (`upgrade=False`: left as it is).

        Starting from an empty database would re-send every paper still listed (the history is the
        ledger), so only `init` creates one, on purpose. SQLite would create a missing file silently,
        hence the check before connecting."""
        path = sqlite_path(url)
        if path is not None and not Path(path).exists():
            raise StoreError(f"no database at {path}: run `digestbot init` to create one; if one existed, restore "
                             f"it from a backup (starting empty would send history again)")
        if path is not None:
            schema.remove_leftovers(Path(path))  # of a creation killed after it gave the file its name
        store = cls(url, busy_timeout=busy_timeout)
        store.verify()
        if upgrade:
            store.upgrade()
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def has_tables(self) -> bool:
        with self.guarded("read the tables"):
            return not {"paper", "delivery", "digest"} - set(inspect(self.engine).get_table_names())

    def verify(self) -> None:
        with self.guarded("read the tables"):
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

    def revision(self) -> Revision:
        """Which schema revision the database has (see upkeep.py)."""
        with self.guarded("read the schema revision"):
            return upkeep.revision(self.engine)

    def upgrade(self) -> Upgraded | None:
        """Bring the schema to this version's, backing a SQLite file up first; None when it was there."""
        path = sqlite_path(self.url)
        with self.guarded("upgrade the schema"):
            return upkeep.upgrade(self.engine, self._where(), Path(path) if path else None, self.busy_timeout)

    def checkpoint(self) -> None:
        """At the end of a send pass: truncate SQLite's write-ahead log when it has grown past
        `wal_limit` bytes (see upkeep.py). Below that, SQLite's own checkpoints keep it bounded
        (the pragmas below), and a checkpoint here would cost every pass ~50 ms of copying and fsync."""
        path = sqlite_path(self.url)
        wal = Path(f"{path}-wal") if path else None
        if wal is not None and wal.exists() and wal.stat().st_size > self.wal_limit:
            checkpoint_wal(self.engine, self.busy_timeout)

    def refresh_statistics(self) -> None:
        """Before set-based work over rows a poll just wrote (opening thousands of digests, loading their
        matches): PostgreSQL's planner otherwise plans with the statistics of nearly empty tables, and
        autovacuum's ANALYZE comes minutes later. Measured at 10k subscriptions: opening took 3.0 s
        instead of 1.6 s; loading a batch's matches scanned the whole match table (9 ms a batch instead
        of 0.9 ms: 1.4 s a pass); the ANALYZE, ~100 ms. SQLite plans by its indexes: nothing to do."""
        if self.engine.dialect.name == "postgresql":
            with self.guarded("refresh the planner's statistics"), self.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE delivery, digest, match")

    def close(self) -> None:
        if self._leader is not None:
            self._leader.close()
        self.engine.dispose()

    def leadership(self) -> Leader:
        """This database's poll leader lock (leader.py), one per Store: whoever holds it polls and opens
        digests; every process sends."""
        with self._leader_made:
            if self._leader is None:
                self._leader = Leader(self.url)
            return self._leader

    @contextmanager
    def guarded(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(f"database busy: {self._writer()} held {self._where()} longer than the busy "
                                 f"timeout ({self.busy_timeout:g} s) while this one tried to {doing}, so that was "
                                 f"not done: wait for it (or raise bot.busy_timeout) and try again") from None
            raise StoreError(f"cannot {doing} in {self._where()}: {exc.orig}") from None
        except IntegrityError as exc:
            # Not damage: on PostgreSQL two processes polling the same source at once both insert its new
            # papers, and the second insert fails; the first one's rows stand (docs/scaling.md).
            raise StoreError(f"cannot {doing} in {self._where()}: another process wrote the same rows at the same "
                             f"moment (is a second digestbot polling the same sources?); this {doing} was undone "
                             f"and the other process's stands: nothing is lost ({_first_line(exc.orig)})") from None
        except DatabaseError as exc:
            raise StoreError(f"cannot {doing} in {self._where()}: {exc.orig} (is it a digestbot database? "
                             f"restore a backup, or `digestbot init` a new one)") from None

    def _writer(self) -> str:
        """Who is likely writing, for a busy database: the process polling (it holds the poll leader lock,
        and says who it is) when that is another one; otherwise a process that sends (every one does)."""
        holder = self._leader.holder() if self._leader is not None else Leader(self.url).holder()
        if holder is not None and (self._leader is None or not self._leader.held):
            return f"another digestbot process ({holder}, which is polling)"
        return "another digestbot process (sending or polling), or another program using the database,"

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def write(self) -> Iterator[Writer]:
        """One write transaction (BEGIN IMMEDIATE on SQLite); commits on success, rolls back on error."""
        with self.guarded("write"), self.engine.connect() as conn:
            conn.info["write"] = True
            try:
                with Session(bind=conn) as session, session.begin():
                    yield Writer(session)
            finally:
                conn.info.pop("write", None)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read session, for the store's own modules (and tests that look at the tables): what other
        code reads comes from the methods below, as values."""
        with self.guarded("read"), Session(self.engine) as session:
            yield session

    # --- reading -------------------------------------------------------------------------------

    def source_memory(self, name: str) -> SourceMemory:
        with self.read() as s:
            state = s.get(SourceState, name)
        if state is None:
            return SourceMemory()
        validators = {url: tuple(v) for url, v in json.loads(state.validators).items()}
        return SourceMemory(last_success=as_utc(state.last_success), validators=validators)

    def source_states(self) -> dict[str, SourceRecord]:
        """Source name -> what its polls left (sources never polled have no entry)."""
        with self.read() as s:
            return {row.name: source_record(row) for row in s.exec(select(SourceState)).all()}

    def papers_from(self, source: str) -> int:
        """How many distinct stored papers `source` has listed (a scan: for `status`, not hot paths)."""
        with self.read() as s:
            return s.exec(select(func.count()).select_from(PaperRow)
                          .where(col(PaperRow.sources).contains(json.dumps(source)))).one()

    def papers(self, days: float | None = None, limit: int | None = None) -> list[Paper]:
        with self.read() as s:
            query = select(PaperRow).order_by(col(PaperRow.first_seen).desc(), col(PaperRow.id).desc())
            if days is not None:
                query = query.where(col(PaperRow.first_seen) >= utcnow() - timedelta(days=days))
            if limit:
                query = query.limit(limit)
            return [paper_from_row(r) for r in s.exec(query).all()]

    def papers_by_keys(self, keys: list[str]) -> list[Paper]:
        """Stored papers by bare arXiv id or title slug."""
        with self.read() as s:
            rows = s.exec(select(PaperRow).where(or_(col(PaperRow.arxiv_id).in_(keys),
                                                     col(PaperRow.slug).in_(keys)))).all()
            return [paper_from_row(r) for r in rows]

    def count_papers(self) -> int:
        with self.read() as s:
            return s.exec(select(func.count()).select_from(PaperRow)).one()

    def count_matches(self) -> int:
        """Every match recorded (a paper matched by two subscriptions counts twice): `/metrics`."""
        with self.read() as s:
            return s.exec(select(func.count()).select_from(MatchRow)).one()

    def delivery_counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """(channel, status) -> number of deliveries."""
        with self.read() as s:
            rows = s.exec(select(col(DeliveryRow.channel), col(DeliveryRow.status), func.count())
                          .group_by(col(DeliveryRow.channel), col(DeliveryRow.status))).all()
        return {(c, DeliveryStatus(st)): n for c, st, n in rows}

    def digests(self, status: DigestStatus | None = None) -> list[DigestRecord]:
        """The digests (with `status`: those in it), oldest first."""
        with self.read() as s:
            query = select(DigestRow).order_by(col(DigestRow.id))
            if status:
                query = query.where(col(DigestRow.status) == status)
            return [digest_record(row) for row in s.exec(query).all()]

    def digest(self, digest_id: int) -> DigestRecord | None:
        with self.read() as s:
            row = s.get(DigestRow, digest_id)
            return None if row is None else digest_record(row)

    def digest_matches(self, digest_id: int) -> list[Match]:
        with self.read() as s:
            rows = s.exec(select(PaperRow, MatchRow, DeliveryRow)
                          .join(DeliveryRow, col(DeliveryRow.paper_id) == col(PaperRow.id))
                          .join(MatchRow, (col(MatchRow.paper_id) == col(PaperRow.id))
                                & (col(MatchRow.subscription) == col(DeliveryRow.subscription)))
                          .where(col(DeliveryRow.digest_id) == digest_id)).all()
        return [Match(m.subscription, paper_from_row(p), m.score,
                      tuple(Hit(*h) for h in json.loads(m.hits))) for p, m, _ in rows]

    def digest_papers(self, digest_ids: list[int]) -> dict[int, tuple[int, ...]]:
        """Digest id -> the sorted ids of its papers, for a whole claimed batch in one light query
        (the send pass loads the matches themselves once per distinct set, see render/shared.py)."""
        found: dict[int, list[int]] = {d: [] for d in digest_ids}
        with self.read() as s:
            conn = s.connection()
            for start in range(0, len(digest_ids), CHUNK):
                chunk = digest_ids[start:start + CHUNK]
                for digest_id, paper_id in conn.execute(_DIGEST_PAPERS, {"ids": chunk}):
                    found[digest_id].append(paper_id)
        return {d: tuple(sorted(papers)) for d, papers in found.items()}

    def matches_of(self, subscription_id: str, paper_ids: tuple[int, ...]) -> list[Match]:
        """The subscription's matches of these papers (the content of a digest, whoever gets it)."""
        with self.read() as s:
            rows = s.connection().execute(_MATCHES_OF, {"subscription": subscription_id,
                                                        "ids": list(paper_ids)}).all()
        return [Match(subscription_id, paper_from_row(row), row.score, tuple(Hit(*h) for h in json.loads(row.hits)))
                for row in rows]

    def matches_of_many(self, wanted: list[tuple[str, tuple[int, ...]]],
                        papers: dict[int, Paper] | None = None) -> dict[tuple[str, tuple[int, ...]], list[Match]]:
        """`matches_of` for several (subscription, paper ids) at once: one query per CHUNK subscriptions
        (a claimed batch's contents), each paper built once (`papers`: paper id -> Paper, kept by the
        caller across batches; the Papers are shared, never to be changed)."""
        papers = {} if papers is None else papers
        subs = sorted({sub for sub, _ in wanted})
        ids = sorted({paper_id for _, paper_ids in wanted for paper_id in paper_ids})
        missing = [paper_id for paper_id in ids if paper_id not in papers]
        found: dict[tuple[str, int], tuple[float, str]] = {}
        with self.read() as s:
            conn = s.connection()
            for start in range(0, len(missing), CHUNK):
                for row in conn.execute(_PAPERS, {"ids": missing[start:start + CHUNK]}):
                    papers[row.id] = paper_from_row(row)
            for start in range(0, len(subs), CHUNK):
                for sub, paper_id, score, hits in conn.execute(_MATCH_ROWS, {"subs": subs[start:start + CHUNK],
                                                                              "ids": ids}):
                    found[(sub, paper_id)] = (score, hits)
        parsed: dict[str, tuple[Hit, ...]] = {}  # the same reasons recur across subscriptions
        result: dict[tuple[str, tuple[int, ...]], list[Match]] = {}
        for sub, paper_ids in wanted:
            matches = []
            for paper_id in paper_ids:
                if (sub, paper_id) in found:
                    score, hits = found[(sub, paper_id)]
                    reasons = parsed.get(hits)
                    if reasons is None:
                        reasons = parsed[hits] = tuple(Hit(*h) for h in json.loads(hits))
                    matches.append(Match(sub, papers[paper_id], score, reasons))
            result[(sub, paper_ids)] = matches
        return result

    def pending_matches(self, subscription_id: str) -> list[Match]:
        """The matches of deliveries not yet in a digest (each paper once): the next digest's content."""
        with self.read() as s:
            rows = s.exec(select(PaperRow, MatchRow)
                          .join(MatchRow, col(MatchRow.paper_id) == col(PaperRow.id))
                          .where(col(MatchRow.subscription) == subscription_id,
                                 col(MatchRow.paper_id).in_(select(col(DeliveryRow.paper_id)).where(
                                     col(DeliveryRow.subscription) == subscription_id,
                                     col(DeliveryRow.digest_id).is_(None),
                                     col(DeliveryRow.status) == DeliveryStatus.PENDING)))).all()
        return [Match(m.subscription, paper_from_row(p), m.score,
                      tuple(Hit(*h) for h in json.loads(m.hits))) for p, m in rows]

    def pending_targets(self, subscription_id: str) -> list[tuple[str, str, datetime]]:
        """(channel, target, oldest created) of deliveries not yet in a digest."""
        with self.read() as s:
            rows = s.exec(select(col(DeliveryRow.channel), col(DeliveryRow.target), func.min(col(DeliveryRow.created)))
                          .where(col(DeliveryRow.subscription) == subscription_id,
                                 col(DeliveryRow.digest_id).is_(None),
                                 col(DeliveryRow.status) == DeliveryStatus.PENDING)
                          .group_by(col(DeliveryRow.channel), col(DeliveryRow.target))).all()
        return [(c, t, as_utc(oldest)) for c, t, oldest in rows]

    def last_successful_poll(self) -> datetime | None:
        """When any source was last polled successfully (None: never), read now from the database: a
        health check (`digestbot serve`'s /healthz). StoreError when the database cannot be read; a
        SQLite file that has gone is that too (connecting would silently make a new, empty one)."""
        path = sqlite_path(self.url)
        if path is not None and not Path(path).is_file():
            raise StoreError(f"no database at {path}")
        with self.read() as s:
            return as_utc(s.exec(select(func.max(col(SourceState.last_success)))).one())

    def first_poll(self, source: str) -> bool:
        """Whether a poll of `source` now is the first of a new database: the source was never polled
        successfully and nothing was ever queued for anyone (no delivery row). Both are facts in the
        database, written by the poll's own transaction: a run killed before that commit leaves it true,
        and one killed after the first source's poll leaves it true for the sources not polled yet."""
        with self.read() as s:
            state = s.get(SourceState, source)
            if state is not None and state.last_success is not None:
                return False
            return s.exec(select(col(DeliveryRow.id)).limit(1)).first() is None

    @contextmanager
    def renaming_subscription(self, old: str, new: str) -> Iterator[dict[str, int]]:
        """Move subscription id `old`'s history to `new` (Writer.rename_subscription) in one transaction
        that commits when the block ends without an error: `subs rename` saves the config inside it."""
        with self.write() as w:
            yield w.rename_subscription(old, new)

    # --- targets that left the config, and what an admin drops ------------------------------------

    def cancel_departed(self, targets: dict[str, list[tuple[str, str]]],
                        now: datetime) -> list[tuple[str, str, str, int, int]]:
        """Cancel what is queued for a (subscription, channel, target) the config no longer has (`targets`:
        subscription id -> its current (channel, target)s; a subscription missing from it was removed).
        The rows stay, marked `cancelled`. (subscription, channel, target, digests, waiting deliveries)
        of each that had something cancelled, so that the caller says so once."""
        done = []
        with self.write() as w:
            for sub, channel, target in sorted(w.queued_targets()):
                if (channel, target) in targets.get(sub, ()):
                    continue
                why = (f"cancelled {now:%Y-%m-%d %H:%M} UTC: " + (f"{target} left the subscription in the config"
                       if sub in targets else f"the subscription {sub!r} was removed from the config"))
                digests, waiting = w.cancel_queued(sub, channel, target, why)
                if digests or waiting:
                    done.append((sub, channel, target, digests, waiting))
        return done

    def discard(self, subscription_id: str | None = None, target: str | None = None, ids: list[int] | None = None,
                *, now: datetime, dry_run: bool = False) -> tuple[int, int]:
        """`digestbot discard`: cancel the pending and failed digests of a subscription and/or target
        and/or with these ids, and (without ids) the deliveries waiting for their digest. (digests,
        waiting deliveries); `dry_run`: how many it would be, nothing changed."""
        subs = [subscription_id] if subscription_id is not None else self._subscriptions_with(target, ids)
        why = f"discarded {now:%Y-%m-%d %H:%M} UTC by `digestbot discard`"
        total = [0, 0]
        try:
            with self.write() as w:
                for sub in subs:
                    digests, waiting = w.cancel_queued(sub, None, target, why, failed_too=True, ids=ids)
                    total[0] += digests
                    total[1] += waiting
                if dry_run:
                    raise _RollBack
        except _RollBack:
            pass
        return total[0], total[1]

    def _subscriptions_with(self, target: str | None, ids: list[int] | None) -> list[str]:
        with self.read() as s:
            digests = select(col(DigestRow.subscription)).distinct()
            waiting = select(col(DeliveryRow.subscription)).distinct()
            if target is not None:
                digests = digests.where(col(DigestRow.target) == target)
                waiting = waiting.where(col(DeliveryRow.target) == target)
            if ids is not None:
                digests = digests.where(col(DigestRow.id).in_(ids))
                return sorted(s.exec(digests).all())
            return sorted({*s.exec(digests).all(), *s.exec(waiting).all()})

    # --- readers who left ------------------------------------------------------------------------

    def suppress(self, subscription_id: str, target: str, now: datetime) -> int:
        """`target` left the subscription (a one-click unsubscribe): it is sent nothing more of it, even
        if the config lists it again, and its queued digests are cancelled (how many: the return value).
        Idempotent."""
        with self.write() as w:
            return w.suppress(subscription_id, target, now)

    def unsuppress(self, subscription_id: str, target: str) -> bool:
        """Undo `suppress`: False when `target` was not suppressed."""
        with self.write() as w:
            return w.unsuppress(subscription_id, target)

    def suppressed(self, subscription_id: str) -> set[str]:
        """The targets that left the subscription."""
        return self.suppressions().get(subscription_id, set())

    def suppressions(self) -> dict[str, set[str]]:
        """Subscription id -> the targets that left it (one query, for a whole poll or send batch)."""
        found: dict[str, set[str]] = {}
        with self.read() as s:
            for sub, target in s.exec(select(col(SuppressionRow.subscription), col(SuppressionRow.target))).all():
                found.setdefault(sub, set()).add(target)
        return found

    # --- readers' feedback on papers ------------------------------------------------------------

    def record_vote(self, subscription_id: str, target: str, paper: str, vote: str, now: datetime) -> None:
        """`target`'s vote ("up": more like this, "down": not for me) on the paper with key `paper`;
        it replaces an earlier vote of the same (subscription, target, paper)."""
        if vote not in VOTES:
            raise ValueError(f"a vote is one of {', '.join(VOTES)}, not {vote!r}")
        with self.write() as w:
            w.record_vote(subscription_id, target, paper, vote, now)

    def remove_vote(self, subscription_id: str, target: str, paper: str) -> bool:
        """Undo a vote: False when there was none."""
        with self.write() as w:
            return w.remove_vote(subscription_id, target, paper)

    def votes_by_subscription(self) -> dict[str, list[Vote]]:
        """Every subscription's votes, newest first, in one query (a poll's learning reads them all)."""
        found: dict[str, list[Vote]] = {}
        with self.read() as s:
            rows = s.exec(select(VoteRow).order_by(col(VoteRow.subscription), col(VoteRow.at).desc(),
                                                   col(VoteRow.paper), col(VoteRow.target))).all()
            for row in rows:
                found.setdefault(row.subscription, []).append(vote_record(row))
        return found

    def votes(self, subscription_id: str, target: str | None = None) -> list[Vote]:
        """The subscription's votes (only `target`'s when given), newest first."""
        with self.read() as s:
            query = select(VoteRow).where(col(VoteRow.subscription) == subscription_id)
            if target is not None:
                query = query.where(col(VoteRow.target) == target)
            rows = s.exec(query.order_by(col(VoteRow.at).desc(), col(VoteRow.paper), col(VoteRow.target))).all()
            return [vote_record(row) for row in rows]

    # --- papers' embeddings (relevance/embed.py) ----------------------------------------------------

    def embeddings(self, model: str, papers: list[str]) -> dict[str, bytes]:
        """The stored embeddings under `model` of the papers with these keys (those it has)."""
        found: dict[str, bytes] = {}
        with self.read() as s:
            for start in range(0, len(papers), 500):  # SQLite's limit on bound parameters
                rows = s.exec(select(EmbeddingRow).where(col(EmbeddingRow.model) == model,
                                                         col(EmbeddingRow.paper).in_(papers[start:start + 500])))
                found.update((row.paper, row.vector) for row in rows)
        return found

    def keep_embeddings(self, model: str, vectors: dict[str, bytes]) -> None:
        """Store embeddings under `model` (one already stored for a paper is kept: they are the same)."""
        with self.write() as w:
            w.keep_embeddings(model, vectors)

    # --- subscribe requests (double opt-in, web/subscribe.py) ----------------------------------------

    def request_confirmation(self, subscription_id: str, query: str, target: str, now: datetime, per_day: int,
                             *, within: timedelta = DUPLICATE_WITHIN) -> ConfirmationRecord | None:
        """Record that `target` asks for the subscription `subscription_id` (or, with `subscription_id` "",
        for one of its own with `query`); None, recording nothing, when the address had `per_day` requests
        in the last 24 hours, or the same request is waiting since less than `within`. One transaction:
        requests made at the same moment (three tabs, two processes) count each other."""
        with self.write() as w:
            return w.request_confirmation(subscription_id, query, target, now, per_day, within)

    def claim_confirmations(self, now: datetime, lease: timedelta, *, ids: list[int] | None = None,
                            since: datetime | None = None) -> list[ConfirmationRecord]:
        """Claim the requests whose mail has not gone (those `ids`; those made after `since`) for
        `lease`: a request is claimed by one sender at a time, so its mail goes once. Report each with
        `confirmation_sent`; one whose sender died is claimable again when its lease has run out."""
        with self.write() as w:
            return w.claim_confirmations(now, lease, ids=ids, since=since)

    def confirmation_sent(self, confirmation_id: int, now: datetime, *, sent: bool = True) -> None:
        """The claimed request's mail was taken by the server (`sent`), or not (it waits to be claimed again)."""
        with self.write() as w:
            w.confirmation_sent(confirmation_id, now, sent=sent)

    def confirm(self, confirmation_id: int, now: datetime) -> ConfirmationRecord | None:
        """Its reader confirmed (idempotent: the first time is kept); None when there is no such request."""
        with self.write() as w:
            return w.confirm(confirmation_id, now)

    def confirmation(self, confirmation_id: int) -> ConfirmationRecord | None:
        with self.read() as s:
            row = s.get(ConfirmationRow, confirmation_id)
            return None if row is None else confirmation_record(row)

    def drop_confirmations(self, before: datetime) -> int:
        """Forget the requests made before `before` (their links have expired); how many."""
        with self.write() as w:
            return w.drop_confirmations(before)

    # --- running daemons ----------------------------------------------------------------------------

    def beat(self, host: str, pid: int, started_at: datetime, now: datetime) -> None:
        """The daemon `pid` on `host`, running since `started_at`, is alive at `now` (its heartbeat)."""
        with self.write() as w:
            w.beat(host, pid, started_at, now)

    def forget_heartbeat(self, host: str, pid: int) -> bool:
        """The daemon stopped cleanly: its heartbeat goes (False when it had none)."""
        with self.write() as w:
            return w.forget_heartbeat(host, pid)

    def heartbeats(self) -> list[Heartbeat]:
        """The daemons' latest heartbeats, newest first (a row of a daemon that died stays, ageing)."""
        with self.read() as s:
            rows = s.exec(select(HeartbeatRow).order_by(col(HeartbeatRow.beat_at).desc(), col(HeartbeatRow.host),
                                                        col(HeartbeatRow.pid))).all()
            return [heartbeat_record(row) for row in rows]

    # --- the send side of the ledger -------------------------------------------------------------

    def open_digest(self, subscription_id: str, channel: str, target: str, period: str,
                    now: datetime, *, allow_empty: bool = False) -> int | None:
        """Create the digest of a period and move every unassigned delivery into it, atomically.

        Returns its id, or None when the period already has a digest (or nothing to send)."""
        return self.open_digests(subscription_id, [(channel, target)], period, now, allow_empty=allow_empty)[0]

    def open_many(self, wanted: list[tuple[str, str, str, str, bool]], now: datetime) -> int:
        """`open_digest` for each (subscription, channel, target, period, allow_empty), set-based: a few
        statements per batch of OPEN_BATCH digests, one write transaction per batch (short, so that
        another process is never locked out for long). How many digests were opened (not empty)."""
        opened = 0
        for start in range(0, len(wanted), OPEN_BATCH):
            with self.write() as w:
                opened += len(w.open_many(wanted[start:start + OPEN_BATCH], now))
        return opened

    def waiting_targets(self) -> dict[str, list[tuple[str, str, datetime]]]:
        """`pending_targets` of every subscription, in one query: subscription id -> (channel, target,
        oldest created) of its deliveries not yet in a digest."""
        found: dict[str, list[tuple[str, str, datetime]]] = {}
        with self.read() as s:
            rows = s.exec(select(col(DeliveryRow.subscription), col(DeliveryRow.channel), col(DeliveryRow.target),
                                 func.min(col(DeliveryRow.created)))
                          .where(col(DeliveryRow.digest_id).is_(None),
                                 col(DeliveryRow.status) == DeliveryStatus.PENDING)
                          .group_by(col(DeliveryRow.subscription), col(DeliveryRow.channel), col(DeliveryRow.target))
                          ).all()
        for sub, channel, target, oldest in rows:
            found.setdefault(sub, []).append((channel, target, as_utc(oldest)))
        return found

    def open_digests(self, subscription_id: str, targets: list[tuple[str, str]], period: str, now: datetime,
                     *, allow_empty: bool = False) -> list[int | None]:
        """`open_digest` for each (channel, target), in one transaction (a subscription with a thousand
        recipients is one commit, not a thousand)."""
        with self.write() as w:
            return [w.open_digest(subscription_id, channel, target, period, now, allow_empty=allow_empty)
                    for channel, target in targets]


class _RollBack(Exception):
    """Raised inside a write transaction to undo it (a dry run)."""


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for other databases and in-memory SQLite)."""
    prefix = "sqlite:///"
    rest = url[len(prefix):] if url.startswith(prefix) else ""
    return rest.split("?", 1)[0] if rest and not rest.startswith(":memory:") else None


def is_blank(path: Path) -> bool:
    """A SQLite file that never held anything (see schema.is_blank)."""
    return schema.is_blank(path)


def set_aside(path: Path) -> Path:
    """Rename a damaged SQLite file (and its -wal/-shm) to NAME.broken-TIMESTAMP; the new name."""
    aside = path.with_name(f"{path.name}.broken-{utcnow():%Y%m%d%H%M%S}")
    for suffix in ("", "-wal", "-shm"):
        old = path.with_name(path.name + suffix)
        if old.exists():
            old.rename(aside.with_name(aside.name + suffix))
    return aside


def _connect_args(url: str, busy_timeout: float) -> dict[str, object]:
    return {"timeout": busy_timeout, "check_same_thread": False} if url.startswith("sqlite") else {}


def _sqlite_pragmas(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        # wal_autocheckpoint: a checkpoint costs two fsyncs (~12 ms here); at SQLite's default of
        # 1,000 pages a send pass met one every ~200 sent digests, on its commit path. At 10,000
        # (a WAL of up to ~40 MB, removed when the last connection closes) it is ten times rarer.
        # journal_size_limit: after such a checkpoint the file shrinks back to that size, instead of
        # staying as large as the largest burst for as long as the daemon runs.
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}",
                       "foreign_keys=ON", "synchronous=NORMAL", f"wal_autocheckpoint={WAL_PAGES}",
                       f"journal_size_limit={WAL_LIMIT}"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")
