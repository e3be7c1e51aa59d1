"""The sender threads of a send pass: each takes prepared digests from a queue, sends them through
channels of its own (its own SMTP connection) and records what the server said in the pass's ledger.

    the pass's thread (pipeline._send_pass)             sender threads (here), one per connection
    open a chunk -> claim -> check -> render -> put  ==>  hold -> channel.send -> record (Ledger.sent)

The queues are short (QUEUED per sender): the pass's thread works ahead of the senders by a few
digests, so that its CPU work (claiming, loading, rendering) overlaps the servers' answers, which the
senders wait for with the GIL released.

- Email digests go to `[email] connections` senders sharing one queue. Every other ledger channel
  (slack, slack_webhook) goes to one sender of its own: Slack's rate limit is per Slack channel and kept
  by one SlackChannel between its posts (SlackConfig.min_interval), which two threads would break; and
  a webhook gains nothing from a second connection that would be worth a second ordering.
- Exactly once, per connection: a sender's channels hold back at most one record between them
  (Channel.record, `Channels.get`), so at most one accepted message per connection is unrecorded,
  whatever happens to the process; and each digest is in one queue once (the pass claims it once).
- `hold` is asked just before each send: a digest another sender took over (a stalled process) is
  not sent. A channel found down (`down`, shared by the senders) sends no more digests in this pass:
  they are given back (`deferred`), not attempted.
- A StoreError in a sender (the ledger cannot be written) stops the pass: the other senders drop what
  is queued (the ledger gives those claims back when it closes) and `Senders` raises it in the pass's
  thread. Any other error is one digest's: logged, that digest failed, the others go on.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from .channels import Channel, Envelope
from .errors import DeliveryError, DigestbotError, StoreError
from .models import Message
from .store import Claim, Ledger

log = logging.getLogger(__name__)
NEXT_RUN = timedelta(seconds=1)  # "due again, but not in this pass" (a pass uses one fixed `now`)
QUEUED = 16  # prepared digests waiting per sender: enough to cover a claim or a chunk's opening
HAND = 4  # digests handed to the senders at once, at most (Senders.put)
POLL = 0.1  # seconds between looks at whether a sender failed, while the pass's thread waits for room
SentRow = tuple[str, str, str, int]  # (subscription, channel, target, papers): SendResult.sent


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed digest, ready to send: its message and envelope, made by the pass's thread."""
    row: Claim
    name: str  # the subscription's name, or "alerts"
    message: Message | None = None  # None (without error): not prepared, its channel was already down
    to: Envelope | None = None
    papers: int = 0  # papers shown (for the log and the result)
    error: Exception | None = None  # preparing it failed: handled as a failure to send it


@dataclass
class Outcome:
    """What one sender did (merged into the pass's SendResult by the pass's thread)."""
    sent: list[tuple[SentRow, int]] = field(default_factory=list)  # with the digest id (Ledger.lost)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (subscription, target, error)
    deferred: int = 0


class Channels:
    """The open channels of one sender (one SMTP connection for the pass), by ledger channel; `down`
    is shared by the pass's senders."""

    def __init__(self, open_channel: Callable[[str], Channel], stack: ExitStack, down: set[str]):
        self.open_channel, self.stack, self.down = open_channel, stack, down
        self.open: dict[str, Channel] = {}

    def get(self, ledger_channel: str) -> Channel:
        """The channel to send with; the others first write any record they hold back (Channel.record):
        only the channel about to hand a message over may hold one, so at most one is unrecorded."""
        for other, channel in self.open.items():
            if other != ledger_channel:
                channel.flush()
        if ledger_channel not in self.open:
            self.open[ledger_channel] = self.stack.enter_context(self.open_channel(ledger_channel))
        return self.open[ledger_channel]


class Senders:
    """The sender threads of one send pass. `put` hands them a digest; leaving the block waits until
    they have sent everything put (or, after an error, dropped it) and closed their channels, and
    raises a sender's StoreError in the pass's thread."""

    def __init__(self, open_channel: Callable[[str], Channel], ledger: Ledger, now: datetime, *,
                 email_connections: int = 1):
        self.open_channel, self.ledger, self.now = open_channel, ledger, now
        self.down: set[str] = set()  # ledger channels found unreachable in this pass
        self.stopping = threading.Event()
        self.error: BaseException | None = None  # the first sender's error that stops the pass
        self._queues = {"email": _Queue(email_connections), "other": _Queue(1)}
        self._lock = threading.Lock()

    def __enter__(self) -> Senders:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None:
            self.stopping.set()  # the pass's own error: drop what is queued
        self._finish()
        if kind is None:
            self._raise_if_failed()

    @property
    def outcomes(self) -> list[Outcome]:
        return [sender.outcome for q in self._queues.values() for sender in q.senders]

    def put(self, job: Outgoing) -> None:
        """Queue a digest for its channel's senders (started with the first); waits while their queue is
        full, and raises a sender's error that stopped the pass.

        Digests go over in hands of up to HAND digests: each hand-over wakes a thread, which cost ~5% of
        a pass whose messages share their body. A digest waits in the hand only while the senders have
        others queued: when their queue is empty it goes at once."""
        q = self._queues["email" if job.row.channel == "email" else "other"]
        if not q.senders:
            q.senders = [_Sender(self, q.jobs, f"digestbot-send-{job.row.channel}-{k + 1}") for k in range(q.threads)]
            for sender in q.senders:
                sender.start()
        q.hand.append(job)
        if len(q.hand) >= HAND or q.jobs.empty():
            self._hand_over(q)

    def flush(self) -> None:
        """Hand over the digests waiting in a hand (before the pass's thread does something slow)."""
        for q in self._queues.values():
            if q.hand:
                self._hand_over(q)

    def _hand_over(self, q: _Queue) -> None:
        hand, q.hand = q.hand, []
        while True:
            self._raise_if_failed()
            try:
                return q.jobs.put(hand, timeout=POLL)
            except queue.Full:
                continue

    def failed(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.stopping.set()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _finish(self) -> None:
        """One end mark per sender, then wait for them all (each closes its channels: their held-back
        records are written before the ledger closes). Stopping, they end without one."""
        if not self.stopping.is_set():
            self.flush()
        for q in self._queues.values():
            for _ in q.senders:
                while not self.stopping.is_set():
                    try:
                        q.jobs.put(None, timeout=POLL)
                        break
                    except queue.Full:
                        continue
        for q in self._queues.values():
            for sender in q.senders:
                sender.join()


@dataclass
class _Queue:
    threads: int
    jobs: queue.Queue[list[Outgoing] | None] = field(init=False)
    senders: list[_Sender] = field(default_factory=list)
    hand: list[Outgoing] = field(default_factory=list)  # put, not yet handed over (Senders.put)

    def __post_init__(self) -> None:
        self.jobs = queue.Queue(maxsize=max(2, QUEUED * self.threads // HAND))


class _Sender(threading.Thread):
    """One connection's thread: sends what its queue holds until the end mark (None)."""

    def __init__(self, senders: Senders, jobs: queue.Queue[list[Outgoing] | None], name: str):
        super().__init__(name=name, daemon=True)
        self.senders, self.jobs = senders, jobs
        self.outcome = Outcome()
        self.hand: list[Outgoing] = []  # the rest of the hand taken last, in reverse (popped from the end)

    def run(self) -> None:
        try:
            with ExitStack() as stack:  # its channels, closed (records written) in this thread
                channels = Channels(self.senders.open_channel, stack, self.senders.down)
                while (job := self._next()) is not None:
                    self._deliver(job, channels)
        except BaseException as exc:  # StoreError, or a bug outside one digest's send: the pass stops
            self.senders.failed(exc)

    def _next(self) -> Outgoing | None:
        """The next digest; None at the end mark, or when the pass is stopping (what is still queued
        stays claimed by the ledger, which gives it back when it closes)."""
        while not self.senders.stopping.is_set():
            if self.hand:
                return self.hand.pop()
            try:
                hand = self.jobs.get(timeout=POLL)
            except queue.Empty:
                continue
            if hand is None:
                return None
            self.hand = hand[::-1]
        return None

    def _deliver(self, job: Outgoing, channels: Channels) -> None:
        ledger, now, row = self.senders.ledger, self.senders.now, job.row
        if not ledger.hold(row.id):  # renews the claims; False: another sender took it over
            return
        if row.channel in channels.down or (job.message is None and job.error is None):
            ledger.release([row.id], next_try=now + NEXT_RUN)  # not attempted: no backoff
            self.outcome.deferred += 1
            return
        try:
            if job.error is not None:
                raise job.error
            assert job.message is not None and job.to is not None  # prepared: see Outgoing
            channel = channels.get(row.channel)
            sent_id = channel.send(job.message, job.to)
        except StoreError:
            raise  # the ledger itself is unusable: stop the pass (run_once reports it)
        except DeliveryError as exc:
            if exc.unreachable:
                channels.down.add(row.channel)
            fail(ledger, row, job.name, str(exc), now, self.outcome.failed, permanent=exc.permanent)
            return
        except DigestbotError as exc:  # e.g. a secret variable missing when opening the channel
            channels.down.add(row.channel)
            fail(ledger, row, job.name, str(exc), now, self.outcome.failed, permanent=False)
            return
        except Exception as exc:  # a template or data bug must not stop the other digests
            log.exception("digest %d for %r failed unexpectedly (a bug: please report it)", row.id, job.name)
            fail(ledger, row, job.name, f"{type(exc).__name__}: {exc}", now, self.outcome.failed, permanent=False)
            return
        # The channel runs the record now, or holds it back to overlap it with its next exchange (SMTP).
        channel.record(partial(ledger.sent, row.id, sent_id, now, target=row.target))
        log.info("sent %r (%d papers) to %s by %s as %s", job.name, job.papers, row.target, row.channel, sent_id)
        self.outcome.sent.append(((job.name, row.channel, row.target, job.papers), row.id))


def fail(ledger: Ledger, row: Claim, name: str, error: str, now: datetime, failed: list[tuple[str, str, str]],
         *, permanent: bool) -> None:
    """Record a failed attempt, say when it is tried again, and add it to `failed` (SendResult.failed)."""
    retry_at = ledger.failed(row, error, now, permanent=permanent)
    when = "not retried: fix the cause, then `digestbot retry --failed`" if retry_at is None \
        else f"retried after {retry_at:%Y-%m-%d %H:%M} UTC (or now: `digestbot retry`)"
    log.error("digest for %r to %s (%s) failed: %s; %s", name, row.target, row.channel, error, when)
    failed.append((name, row.target, error))
