"""The stages wired together: poll(source) and send_due(now), each with its error boundaries.

    poll:  source.collect -> store.record_papers -> matcher.match -> store.record_matches   (one transaction)
    send:  due periods -> store.open_many -> claim -> rank -> render -> channel.send -> record (ledger)
           (rank and render once per distinct content, shared by its recipients: render/shared.py)

The send protocol (claim -> send -> record) is `_send_pass`, top to bottom, and sending.py. The
pass's thread opens the due digests a chunk at a time (OPEN_CHUNK subscriptions' worth) between its
claims, so that the first digests go out while later subscriptions are still being opened; it claims a
batch, drops what left the config or was unsubscribed meanwhile, loads and renders, and hands each
digest to the sender threads (sending.py: one per SMTP connection, `[email] connections`), which send
and record while it prepares the next. The ledger (ledger.py) makes each step safe against other
senders and crashes: every digest is claimed once, and each connection leaves at most one accepted
message unrecorded.

One source failing never stops the others; one recipient failing never stops the others.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from . import alerts, sources
from .channels import Channel, Envelope
from .config import Config, SubscriptionConfig
from .digest import list_id, mail_domain, rank, unsubscribe_urls
from .errors import DigestbotError, SourceError, StoreError
from .http import ClockError, Http
from .matching import PaperMatcher
from .models import Paper
from .render import Renderer
from .render.shared import Contents
from .sending import Outgoing, Senders
from .store import ALERTS, Claim, DigestRecord, Leader, Ledger, Store

log = logging.getLogger(__name__)
LATER = timedelta(minutes=1)
OPEN_CHUNK = 1_000  # due digests opened at a time by a send pass, between its claims
BATCH = 100  # digests claimed at a time
# Papers matched and recorded at a time by a poll (PaperMatcher.per_paper): at 50,000 subscriptions a
# paper has ~2,000 matches of ~650 bytes each, so a slice holds ~30 MB instead of a whole listing's.
MATCH_SLICE = 20  # a digest of a subscription not in the config while the file is being edited
# How long `run --once` waits for another process that polls (it holds the poll leader lock, store/leader.py)
# before it gives up polling: a large poll takes minutes, a hung one should not hold every later run.
LEADER_WAIT = 600.0


class Context(Protocol):
    """The parts the stages work on; app.App builds them from a config."""

    config: Config
    http: Http
    renderer: Renderer
    open_channel: Callable[[str], Channel]  # ledger channel -> the channel carrying it (channels.opener)
    send_backlog: bool  # False: a new database's first poll of each source queues nothing (see `poll`)

    @property
    def store(self) -> Store: ...

    @property
    def matcher(self) -> PaperMatcher: ...

    def embed_new(self, papers: list[Paper]) -> None:
        """Represent the papers a poll just stored, once (app.App: sentence embeddings, when configured)."""

    def polled(self) -> None:
        """run_once's polls are over: what only polling needs may go (app.App: the matcher, built again if
        this context polls again)."""


@dataclass
class PollResult:
    source: str
    seen: int = 0
    new: int = 0
    matched: int = 0
    error: str | None = None
    clock_wrong: bool = False  # the error is this machine's clock: nothing may be acted on (run_once)
    backlog: bool = False  # the first poll of a new database: recorded, nothing queued (`matched` would have been)
    # Not polled here: another digestbot process polled it while this one waited for the poll leader lock
    # (or a daemon that leads polls it on its schedule): nothing to do, not an error (run_once).
    polled_by_another: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by phase: collect, match, record


@dataclass
class SendResult:
    sent: list[tuple[str, str, str, int]] = field(default_factory=list)  # (subscription, channel, target, papers)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (subscription, target, error)
    deferred: int = 0  # claimed but not attempted: their channel was down
    # (subscription id, channel, target, digests + waiting papers) cancelled: the target left the config
    cancelled: list[tuple[str, str, str, int]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time by phase: open (digests), send

    def took(self, phase: str, since: float) -> float:
        """Add the time since `since` (time.perf_counter()) to `phase`; the time now."""
        return _took(self.seconds, phase, since)


def targets(sub: SubscriptionConfig) -> list[tuple[str, str]]:
    webhook = [("slack_webhook", "webhook")] if sub.slack_webhook or sub.slack_webhook_env else []
    return [("email", a) for a in sub.email] + [("slack", c) for c in sub.slack] + webhook


def is_fresh(paper: Paper, now: datetime, max_age_days: int) -> bool:
    """No flood: a paper published long before we first saw it is recorded, not delivered."""
    return paper.published is None or paper.published >= now - timedelta(days=max_age_days)


def poll(ctx: Context, name: str, now: datetime, *, send: bool = True, taken: float | None = None) -> PollResult:
    """Collect one source and record what is new. `taken`: time.monotonic() when `now` was read
    (default: now), so that a poll late in a long run does not take its clock for wrong."""
    source = sources.build(ctx.config.source(name), ctx.http)
    ctx.http.forget_server_date(name)
    taken = time.monotonic() if taken is None else taken
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    try:
        memory = ctx.store.source_memory(name)
        # No flood: what a new database's first poll lists was announced before this installation
        # started (a week of arXiv, all at once); it is recorded as seen and only later papers are sent.
        backlog = send and not ctx.send_backlog and ctx.store.first_poll(name)
        papers = source.collect(now, memory)
        ctx.http.check_clock(name, now, taken)
        recipients = all_targets(ctx.config, ctx.store.suppressions())
        seconds["collect"], clock = time.perf_counter() - clock, time.perf_counter()
        with ctx.store.write() as w:
            new = w.record_papers(name, papers, now)
            fresh = [(i, p) for i, p in new if is_fresh(p, now, ctx.config.bot.max_age_days)] if send else []
            ids = {p.key: i for i, p in fresh}
            seconds["record"], clock = time.perf_counter() - clock, time.perf_counter()
            seconds["match"], matched = 0.0, 0
            step = MATCH_SLICE if ctx.matcher.per_paper else max(1, len(fresh))
            for start in range(0, len(fresh), step):  # a slice's matches are recorded, then dropped
                matches = ctx.matcher.match([p for _, p in fresh[start:start + step]])
                matched += len(matches)
                clock = _took(seconds, "match", clock)
                if not backlog:
                    w.record_matches([(ids[m.paper.key], m) for m in matches], recipients, now)
                clock = _took(seconds, "record", clock)
                del matches
            w.source_polled(name, now, seen=len(papers), new=len(new), validators=memory.new_validators)
        _took(seconds, "record", clock)  # the commit
    except ClockError as exc:  # not even the failure is recorded: its time would be wrong too
        log.error("%s", exc)
        return PollResult(name, error=str(exc), clock_wrong=True)
    except (SourceError, StoreError) as exc:
        _record_failure(ctx, name, now, str(exc))
        return PollResult(name, error=str(exc))
    except Exception as exc:  # a bug in one source kind must not stop the other sources
        log.exception("%s: unexpected error while polling", name)
        error = f"source {name!r}: internal error {type(exc).__name__}: {exc} (please report this bug)"
        _record_failure(ctx, name, now, error)
        return PollResult(name, error=error)
    try:  # after the transaction: a slow model never holds the database's write lock
        ctx.embed_new([p for _, p in new])
    except Exception:  # the papers are stored; learning finds their embeddings missing and computes them
        log.exception("%s: embedding the new papers failed", name)
    if backlog:
        log.warning("%s: first poll of a new database: %d papers listed, recorded as already seen; their %d "
                    "matches are NOT sent (`digestbot run --send-backlog` sends a first poll's matches); papers "
                    "first seen from now on are sent as usual", name, len(papers), matched)
        return PollResult(name, seen=len(papers), new=len(new), matched=matched, backlog=True, seconds=seconds)
    log.info("%s: %d papers listed, %d new, %d recorded without sending (older than %d days), %d matches",
             name, len(papers), len(new), len(new) - len(fresh) if send else 0, ctx.config.bot.max_age_days,
             matched)
    return PollResult(name, seen=len(papers), new=len(new), matched=matched, seconds=seconds)


def _took(seconds: dict[str, float], phase: str, since: float) -> float:
    """Add the time since `since` (time.perf_counter()) to `phase`; the time now."""
    now = time.perf_counter()
    seconds[phase] = seconds.get(phase, 0.0) + now - since
    return now


def _record_failure(ctx: Context, name: str, now: datetime, error: str) -> None:
    log.error("%s", error)
    try:
        with ctx.store.write() as w:
            w.source_polled(name, now, error=error)
    except StoreError as exc:
        log.error("could not record the failure of %s: %s", name, exc)


def all_targets(config: Config, suppressed: dict[str, set[str]] | None = None) -> dict[str, list[tuple[str, str]]]:
    """Each subscription's (channel, target)s but those that left it by a one-click link: listing an
    address in the config again does not bring the mail back; only its reader's undo does."""
    suppressed = suppressed or {}
    return {sub.id: [(c, t) for c, t in targets(sub) if t not in suppressed.get(sub.id, ())]
            for sub in config.subscriptions}


_all_targets = all_targets  # its name before `retry --failed` used it too


def open_due_digests(ctx: Context, now: datetime) -> None:
    """Turn every subscription whose period has come into digest rows (idempotent per period).

    A digest takes every delivery not yet in a digest; it opens when the latest period (keyed by local
    wall-clock time, see schedule.py) has begun after the oldest of them, so a restart or a DST switch
    can neither repeat a period (its key already has a row) nor lose one (it opens on the next call).
    A send pass opens the same digests a chunk at a time (`_Openings`).
    """
    if not may_open(ctx):  # only the poll leader opens: two processes never open at once (store/leader.py)
        return
    ctx.store.open_many(due_digests(ctx, now), now)


def due_digests(ctx: Context, now: datetime) -> list[tuple[str, str, str, str, bool]]:
    """The digests `open_due_digests` opens: (subscription, channel, target, period, allow_empty) of each
    subscription not paused whose period has come, but for targets that left by a one-click link."""
    suppressed = ctx.store.suppressions()
    waiting = ctx.store.waiting_targets()  # one query for every subscription, not one each
    wanted: list[tuple[str, str, str, str, bool]] = []
    instant = f"instant:{now.isoformat()}"
    for sub in ctx.config.subscriptions:
        if sub.paused:  # its matches keep waiting: the first digest after the resume has them
            continue
        schedule = ctx.config.schedules[sub.id]
        left = suppressed.get(sub.id, set())
        pending = [(c, t, oldest) for c, t, oldest in waiting.get(sub.id, ()) if t not in left]
        if schedule.instant:
            wanted.extend((sub.id, c, t, instant, False) for c, t, _ in pending)
            continue
        period = schedule.last_period(now)
        if period is None:
            continue
        ready = {(c, t) for c, t, oldest in pending if oldest <= period.start}
        wanted.extend((sub.id, c, t, period.key, sub.send_empty) for c, t in targets(sub)
                      if ((c, t) in ready or sub.send_empty) and t not in left)
    return wanted


def may_open(ctx: Context) -> bool:
    """Whether this process may open digests now: only while it holds the poll leader lock (checked with
    the database: a leader whose lock connection broke has lost it), so that two processes never open at
    once. run_once opens under the lock before it sends; a daemon opens while it leads (daemon.py)."""
    leader = ctx.store.leadership()
    if leader.held and leader.check():
        return True
    log.debug("not opening digests: another digestbot process leads (it opens them); this one only sends")
    return False


@contextmanager
def _opening_lock(leader: Leader) -> Iterator[None]:
    """A send pass of a program that does not coordinate with others (a script or the demo calling
    send_due; nobody set `Leader.managed`) takes the poll leader lock for its pass when it is free, so
    that its opening is under the lock too; when another process holds it, that one opens the digests
    and this pass only sends. The daemon and run_once take and give the lock up themselves."""
    took = not leader.managed and not leader.held and leader.try_acquire()
    try:
        yield
    finally:
        if took:
            leader.release()


_ONE_PASS = threading.Lock()  # the daemon's jobs run in threads (daemon.py): one send pass at a time


def send_due(ctx: Context, now: datetime, *, opened: Callable[[], None] | None = None) -> SendResult:
    """Open the digests whose period has come, then claim and send every due one, batch by batch.

    A second caller in this process waits for the running pass instead of skipping its own: it may
    have opened new instant digests. Two passes at once would race each other for no gain.

    Alerts (alerts.py, with `[alerts]`) are checked first, so that a problem a poll saw goes out with
    this pass, and after a pass with failures again, with one more pass for what that queued (the
    digests that failed are not due again at this `now`: it sends only the new alerts)."""
    with _ONE_PASS, _opening_lock(ctx.store.leadership()):
        alerts.check(ctx.config, ctx.store, now)
        result = _send_pass(ctx, now, opened)
        if result.failed and alerts.check(ctx.config, ctx.store, now):
            more = _send_pass(ctx, now)
            result.sent += more.sent
            result.failed += more.failed
            result.deferred += more.deferred
            for phase, took in more.seconds.items():
                result.seconds[phase] = result.seconds.get(phase, 0.0) + took
        return result


def cancel_departed(ctx: Context, now: datetime) -> list[tuple[str, str, str, int]] | None:
    """Removing means removed: what is queued for a target or subscription that has left the config is
    cancelled (kept, marked), and said once. Only while the config in memory is the file's (None when it
    is not): a daemon about to reload an edit (`subs rename` moves the history with the file) must not
    act on the old one."""
    if not config_is_current(ctx.config):
        return None
    current = {sub.id: targets(sub) for sub in ctx.config.subscriptions}
    current[ALERTS] = ctx.config.alerts.targets() if ctx.config.alerts else []  # alerts.py's messages
    done = ctx.store.cancel_departed(current, now)
    for sub, channel, target, digests, waiting in done:
        log.warning("cancelled %d queued digests and %d waiting papers of %r to %s (%s): %s", digests, waiting,
                    sub, target, channel, "no longer in the config" if any(s.id == sub for s in
                                                                           ctx.config.subscriptions)
                    else "the subscription was removed from the config")
    return [(sub, channel, target, digests + waiting) for sub, channel, target, digests, waiting in done]


def config_is_current(config: Config) -> bool:
    """Whether the config file still holds what `config` was loaded from."""
    try:
        return config.path.read_text(encoding="utf-8") == config.text
    except (OSError, UnicodeDecodeError):
        return False


def _send_pass(ctx: Context, now: datetime, opened: Callable[[], None] | None = None) -> SendResult:
    started = time.perf_counter()
    cancelled = cancel_departed(ctx, now)
    result = SendResult(cancelled=cancelled or [])
    openings = _Openings(ctx, now, result, opened)  # the due digests, opened a chunk at a time below
    ledger = Ledger(ctx.store, timedelta(seconds=ctx.config.bot.send_lease))
    subscriptions = {s.id: s for s in ctx.config.subscriptions}
    connections = ctx.config.email.connections if ctx.config.email else 1
    result.took("open", started)
    with ExitStack() as stack:
        stack.callback(ledger.close)
        stack.enter_context(ledger.kept_alive())
        # Left before ledger.close: the senders' held-back records are written first (sending.py).
        senders = stack.enter_context(Senders(ctx.open_channel, ledger, now, email_connections=connections))
        contents = stack.enter_context(Contents(ctx.config, ctx.store, ctx.renderer, now, subscriptions=subscriptions,
                                                expected=len(openings.wanted)))
        openings.open_next()
        while batch := openings.claim(ledger):
            # Read per batch: a reader may leave while a long pass runs (their queued digests are then
            # cancelled by Store.suppress, but one claimed already is only stopped here).
            suppressed = ctx.store.suppressions()
            left = [row.id for row in batch if row.target in suppressed.get(row.subscription_id, ())]
            if left:
                ledger.cancel(left)
                batch = [row for row in batch if row.id not in left]
            contents.load(batch)
            for row in batch:
                if not ledger.hold(row.id):  # renews the claims; False: another sender took it over
                    continue
                sub = subscriptions.get(row.subscription_id)
                if row.subscription_id != ALERTS and (sub is None or (row.channel, row.target) not in targets(sub)):
                    if cancelled is None:  # the file has changed since this config was loaded: ask again later
                        ledger.release([row.id], next_try=now + LATER)
                    else:
                        log.warning("digest %d for %r to %s is cancelled: no longer in the config", row.id,
                                    row.subscription_id, row.target)
                        ledger.cancel([row.id])
                elif row.channel in senders.down:  # not rendered: the sender gives it back (`deferred`)
                    senders.put(Outgoing(row, sub.name if sub else "alerts"))
                else:
                    senders.put(_prepare(ctx, row, sub, contents))
            senders.flush()  # before the next claim and opening
            openings.keep_ahead()
    for outcome in senders.outcomes:  # the senders' own tallies, now that they have ended
        # another sender took the lost ones over: theirs to count
        result.sent += [sent for sent, digest_id in outcome.sent if digest_id not in ledger.lost]
        result.failed += outcome.failed
        result.deferred += outcome.deferred
    ctx.store.checkpoint()
    result.seconds["send"] = time.perf_counter() - started - result.seconds.get("open", 0.0)
    if result.deferred:
        log.error("%d digests were not attempted because their channel is down (%s); they stay pending for "
                  "the next run", result.deferred, ", ".join(sorted(senders.down)))
    return result


class _Openings:
    """The due digests of one pass (`due_digests`), opened OPEN_CHUNK at a time: the first before the
    first claim, the next whenever fewer than two batches' worth opened are left to claim, so the
    senders are busy while it opens. The last claims find every digest opened."""

    def __init__(self, ctx: Context, now: datetime, result: SendResult, opened: Callable[[], None] | None = None):
        self.ctx, self.now, self.result, self.opened = ctx, now, result, opened
        self.wanted = due_digests(ctx, now) if may_open(ctx) else []  # only the poll leader opens (may_open)
        if len(self.wanted) >= OPEN_CHUNK:
            ctx.store.refresh_statistics()
        self.opened_upto = 0
        self.unclaimed = 0  # opened in this pass and not claimed yet (a guess: retries are claimed too)

    def open_next(self) -> bool:
        """Open the next chunk; False when every due digest is open."""
        if self.opened_upto >= len(self.wanted) or (self.opened_upto and not may_open(self.ctx)):
            self.done()
            return False
        clock = time.perf_counter()
        chunk = self.wanted[self.opened_upto:self.opened_upto + OPEN_CHUNK]
        self.opened_upto += len(chunk)
        self.unclaimed += self.ctx.store.open_many(chunk, self.now)
        self.result.took("open", clock)
        if self.opened_upto >= len(self.wanted):
            self.done()  # at once: a process waiting for the lock sends along while this pass still sends
        return True

    def claim(self, ledger: Ledger) -> list[Claim]:
        """The next batch of due digests (opening more when none is left); [] when all are claimed."""
        while True:
            batch = ledger.claim_batch(self.now, limit=BATCH)
            self.unclaimed = max(0, self.unclaimed - len(batch))
            if batch or not self.open_next():
                return batch

    def done(self) -> None:
        """Every due digest is open (or this process stopped leading): say so once (`send_due`'s `opened`)."""
        if self.opened is not None:
            opened, self.opened = self.opened, None
            opened()

    def keep_ahead(self) -> None:
        if self.unclaimed < 2 * BATCH:
            self.open_next()


def _prepare(ctx: Context, row: Claim, sub: SubscriptionConfig | None, contents: Contents) -> Outgoing:
    """A claimed digest's message and envelope (`sub` None: an alert message). A failure is the
    digest's (the sender records it), but for a StoreError, which stops the pass."""
    name = sub.name if sub is not None else "alerts"
    try:
        if sub is None:
            message, to = alerts.delivery(ctx.config, ctx.store, row)
            return Outgoing(row, name, message, to)
        content = contents.get(row, sub)  # shared by the subscription's recipients; the envelope is theirs
        to = envelope(ctx.config, row, sub, ctx.store.installation, unsubscribe=content.unsubscribe)
        return Outgoing(row, name, content.message, to, content.papers)
    except StoreError:
        raise
    except Exception as exc:  # handled where the send would have been (sending.py): logged, the digest failed
        return Outgoing(row, name, error=exc)


__all__ = ["Context", "PollResult", "SendResult", "due_digests", "may_open", "open_due_digests", "poll", "rank",
           "run_once",
           "send_due"]


def envelope(config: Config, row: Claim | DigestRecord, sub: SubscriptionConfig, installation: str, *,
             unsubscribe: tuple[str, ...] | None = None) -> Envelope:
    """The Message-ID is unique for ever: row ids restart at 1 in a new database, so the database's
    installation id goes with them; a re-send of the same digest keeps it (a duplicate is recognisable).
    `unsubscribe`: the List-Unsubscribe URLs already in a personal body's footer (the same token)."""
    domain = mail_domain(config)
    return Envelope(target=row.target, subscription=sub.name, subscription_id=sub.id,
                    message_id=f"<digest-{row.id}.{installation}.{sub.id}@{domain}>",
                    list_id=list_id(config, sub),
                    unsubscribe=unsubscribe or unsubscribe_urls(config, sub, row.target))


def run_once(ctx: Context, now: datetime, *, send: bool = True) -> tuple[list[PollResult], SendResult]:
    """Poll every source, open the digests that are due, send them.

    Several processes may run this on one database at once (store/leader.py): the one that takes the poll
    leader lock polls and opens the due digests, then gives the lock up and sends. One that finds the lock
    taken waits for it, then polls only the sources nobody polled meanwhile (their `PollResult` say
    `polled_by_another`), opens (nothing, usually) and sends too: the ledger's claims split the sending, each
    digest goes once. While a daemon leads, polling is its job: this only sends."""
    leader = ctx.store.leadership()
    managed, role = leader.managed, leader.role
    leader.managed, leader.role = True, "run --once"  # the send pass below must not take the lock itself
    release = False
    try:
        polls, release = _poll_and_open(ctx, leader, now, send=send)
        ctx.polled()  # the send pass reuses what only the polls needed
        if not send:
            return polls, SendResult()
        if any(p.clock_wrong for p in polls):  # it would open digests of periods that have not come
            log.error("not sending: this machine's clock is wrong (see above); fix it and run again")
            return polls, SendResult()
        try:
            # Holding the lock, the pass cancels what left the config and opens the due digests a chunk at a
            # time while its senders send, and gives the lock up as soon as every one is open (`opened`): a
            # waiting process may then go on.
            return polls, send_due(ctx, now, opened=leader.release if release else None)
        except (StoreError, DigestbotError) as exc:
            log.error("%s", exc)
            return polls, SendResult(failed=[("*", "*", str(exc))])
    finally:
        if release and leader.held:
            leader.release()
        leader.managed, leader.role = managed, role


def _poll_and_open(ctx: Context, leader: Leader, now: datetime, *, send: bool) -> tuple[list[PollResult], bool]:
    """run_once's part under the poll leader lock: the polls, and whether the lock is still held for the send
    pass's opening (run_once gives it up after it)."""
    taken = time.monotonic()
    before = _poll_counts(ctx)
    already = leader.held
    if not leader.try_acquire():
        holder = leader.holder()
        if holder is not None and holder.role == "daemon":
            log.warning("a digestbot daemon leads polling (%s): it polls on its schedule; this run polls nothing "
                        "and only sends", holder)
            return [PollResult(o.name, polled_by_another=True) for o in ctx.config.sources], False
        log.warning("another digestbot process is polling%s; waiting for it", f" ({holder})" if holder else "")
        if not leader.acquire(LEADER_WAIT):
            error = (f"not polled: another digestbot process{f' ({holder})' if holder else ''} has been polling "
                     f"for over {LEADER_WAIT / 60:.0f} minutes (it holds the poll leader lock); is it stuck? "
                     f"This run only sent what was due")
            log.error("%s", error)
            return [PollResult(o.name, error=error) for o in ctx.config.sources], False
        return _as_leader(ctx, leader, now, send=send, taken=taken, unchanged=_unchanged(before, _poll_counts(ctx)),
                          release=True)
    return _as_leader(ctx, leader, now, send=send, taken=taken, unchanged=None, release=not already)


def _as_leader(ctx: Context, leader: Leader, now: datetime, *, send: bool, taken: float,
               unchanged: Callable[[str], bool] | None, release: bool) -> tuple[list[PollResult], bool]:
    """Poll (with `unchanged`: only the sources it accepts), holding the lock. With `release`, the lock is
    given up here when nothing is to be sent, else kept for the send pass to open the due digests under it
    (the second item says so: run_once gives it up after the opening)."""
    keep = False
    try:
        polls = []
        for options in ctx.config.sources:
            if unchanged is not None and not unchanged(options.name):
                log.info("%s: polled by another digestbot process while this one waited; not polled again",
                         options.name)
                polls.append(PollResult(options.name, polled_by_another=True))
            else:
                polls.append(poll(ctx, options.name, now, send=send, taken=taken))
        keep = release and send and not any(p.clock_wrong for p in polls)
        return polls, keep
    finally:
        if release and not keep:
            leader.release()


def _poll_counts(ctx: Context) -> dict[str, tuple[int, int]] | None:
    """Each source's (polls, failed polls) counters: a change says another process polled it."""
    try:
        return {name: (s.polls, s.failed_polls) for name, s in ctx.store.source_states().items()}
    except StoreError as exc:
        log.warning("could not read the sources' poll counters (%s): polling every source", exc)
        return None


def _unchanged(before: dict[str, tuple[int, int]] | None,
               after: dict[str, tuple[int, int]] | None) -> Callable[[str], bool]:
    if before is None or after is None:
        return lambda name: True
    return lambda name: before.get(name) == after.get(name)
