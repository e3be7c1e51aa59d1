"""Alerts, not silence (`[alerts]`): one message when a source fails N polls in a row or lists nothing new
for longer than usual for it, when digests fail for good, when the daemon restarts after a crash; one
"recovered" message when the problem goes away; at most one alert per problem per day.

`evaluate` is a pure function: what was observed (`Observed`), the problems the store remembers and `now`
give the problems' new states and the messages to queue. `check` observes (a few light queries), and
only when something changes writes the decision in one transaction (store.AlertBook). The messages are
digest rows of the reserved subscription ALERTS, so the ledger delivers them like digests: claimed,
sent once, retried when the SMTP server or Slack is down, counted by `digestbot status`.

A source's usual gaps are learned from its history (when its polls listed new papers, store table
source_news): arXiv announces nothing on Friday and Saturday, so its weekend gap of ~3 days is usual and a
quiet Saturday is no alert; a quiet Tuesday is. The usual longest gap is one that about half of the weeks
of the history reach (robust to one past outage); a source is quiet once a successful poll found nothing
new for `quiet_factor` times that (never sooner than `min_quiet_hours`; with under two weeks of
history, 3 days stands for the usual gap).

The send pass (pipeline.send_due) runs `check` before it sends, and again after a pass that had failures,
so a problem seen by a poll or a send goes out with the same pass. The daemon adds what only it can see at
start: a heartbeat row of this host left behind by a process that is not running (`crashed_daemons`).
"""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from .channels import Envelope
from .config import Config
from .config.alerts import AlertsConfig
from .errors import DeliveryError, StoreError
from .models import Message, SlackPost
from .store import ALERTS, AlertBook, AlertMessage, AlertRecord, Claim, Heartbeat, Store

log = logging.getLogger(__name__)
HISTORY = timedelta(days=42)  # how far back the usual gaps are learned (the store keeps as much)
ENOUGH_HISTORY = timedelta(days=14)
NO_HISTORY_GAP = timedelta(days=3)  # the usual gap of a source with too little history
WEEK = timedelta(days=7)
SOURCE_FAILING, SOURCE_QUIET, DIGESTS_FAILED, DAEMON_CRASHED = (
    "source-failing", "source-quiet", "digests-failed", "daemon-crashed")
SLACK_SECTION = 2900  # Slack's section text holds 3,000 characters


@dataclass(frozen=True, slots=True)
class SourceView:
    """What the store knows of one configured source."""
    name: str
    failures: int  # failed polls since its last success
    last_success: datetime | None
    last_error: str | None
    news: tuple[datetime, ...] = ()  # when its polls listed new papers (the last HISTORY), oldest first


@dataclass(frozen=True, slots=True)
class Observed:
    sources: tuple[SourceView, ...] = ()
    failed_digests: int = 0
    failed_error: str | None = None  # the newest failed digest's
    crashes: tuple[Heartbeat, ...] = ()  # heartbeat rows of daemons that died without a clean stop
    restarted: Heartbeat | None = None  # the daemon that found them


@dataclass(frozen=True, slots=True)
class Settings:
    failed_polls: int = 3
    quiet_factor: float = 1.5
    min_quiet: timedelta = timedelta(hours=24)
    timezone: str = "UTC"
    targets: tuple[tuple[str, str], ...] = ()
    signature: str = "digestbot"  # who speaks: host and config, in every message

    @classmethod
    def of(cls, config: Config, alerts: AlertsConfig) -> Settings:
        return cls(failed_polls=alerts.failed_polls, quiet_factor=alerts.quiet_factor,
                   min_quiet=timedelta(hours=alerts.min_quiet_hours), timezone=config.bot.timezone,
                   targets=tuple(alerts.targets()), signature=f"digestbot on {socket.gethostname()} ({config.path})")


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem present now: its key, a one-line title, the alert's text."""
    key: str
    title: str
    text: str
    event: bool = False  # a crash: told once, nothing to recover from


# --- learning a source's usual gaps -------------------------------------------------------------------

def usual_gap(news: Sequence[datetime], now: datetime) -> timedelta | None:
    """The longest gap between new listings that about half the weeks of the history reach; None with
    under ENOUGH_HISTORY of history. With w weeks of history, the ceil(w/2)-th longest gap: arXiv's
    weekend (one a week) is usual, a single past outage is not."""
    if len(news) < 2 or now - news[0] < ENOUGH_HISTORY:
        return None
    weeks = min((now - news[0]) // WEEK, HISTORY // WEEK)
    gaps = sorted((later - earlier for earlier, later in zip(news, news[1:], strict=False)), reverse=True)
    return gaps[min(len(gaps), max(1, (weeks + 1) // 2)) - 1]


def quiet_after(news: Sequence[datetime], now: datetime, settings: Settings) -> timedelta:
    """How long a source may list nothing new before it is quiet."""
    usual = usual_gap(news, now)
    return max(settings.min_quiet, settings.quiet_factor * usual if usual is not None else NO_HISTORY_GAP)


# --- the pure evaluation ------------------------------------------------------------------------------

def problems(observed: Observed, settings: Settings, now: datetime) -> list[Problem]:
    """The problems present in what was observed."""
    found = []
    zone = ZoneInfo(settings.timezone)
    for source in observed.sources:
        if source.failures >= settings.failed_polls:
            since = f"since its last success at {_when(source.last_success, zone)}" if source.last_success \
                else "it has never been polled successfully"
            found.append(Problem(
                f"{SOURCE_FAILING}:{source.name}", f"source {source.name} failed {_polls(source.failures)} in a row",
                f"Source {source.name!r} failed its last {_polls(source.failures)} ({since}).\n"
                f"Last error: {source.last_error or 'unknown'}\n\n"
                f"Its subscribers get no papers from it meanwhile. `digestbot sources` shows every source's "
                f"state; `digestbot sources check {source.name}` fetches it now and shows what goes wrong."))
        elif source.failures == 0 and source.news and source.last_success is not None:
            last, allowed = source.news[-1], quiet_after(source.news, now, settings)
            # Quiet only once a poll *after* the allowed gap found nothing (not merely a daemon that was down).
            if source.last_success - last > allowed and now - last > allowed:
                usual = usual_gap(source.news, now)
                learned = f"its usual longest gap is {_hours(usual)}" if usual is not None \
                    else f"too little history to learn its usual gaps; {_hours(NO_HISTORY_GAP)} stands for them"
                found.append(Problem(
                    f"{SOURCE_QUIET}:{source.name}", f"source {source.name} has listed nothing new for "
                    f"{_hours(now - last)}",
                    f"Source {source.name!r} has listed nothing new since {_when(last, zone)} ({_hours(now - last)}"
                    f", longer than usual: {learned}; alerts come after {_hours(allowed)}).\n"
                    f"Its polls succeed: the listing may have moved or changed its format, or the source may be "
                    f"paused. `digestbot sources check {source.name}` shows what it lists now; "
                    f"`digestbot papers` what was stored lately."))
    if observed.failed_digests:
        n = observed.failed_digests
        found.append(Problem(
            DIGESTS_FAILED, f"{n} digest{'s' if n != 1 else ''} failed for good",
            f"{n} digest{'s' if n != 1 else ''} failed and will not be retried on {'their' if n != 1 else 'its'} "
            f"own.\nThe newest error: {observed.failed_error or 'unknown'}\n\n"
            f"`digestbot status` lists them; fix the cause (an address, a channel, the server), then "
            f"`digestbot retry --failed` sends them again."))
    for crash in observed.crashes:
        restarted = observed.restarted
        again = f" It restarted at {_when(restarted.started_at, zone)} (pid {restarted.pid})." if restarted else ""
        found.append(Problem(
            f"{DAEMON_CRASHED}:{crash.host}", f"the daemon on {crash.host} restarted after a crash",
            f"The digestbot daemon on {crash.host} (pid {crash.pid}, running since "
            f"{_when(crash.started_at, zone)}) stopped without a clean shutdown: its last heartbeat was at "
            f"{_when(crash.beat_at, zone)}.{again}\n\n"
            f"Look at the system log of that time for why (`journalctl -u digestbot`, the OOM killer). Digests it "
            f"was sending are sent again by the ledger; `digestbot status` shows what is pending.",
            event=True))
    return found


def evaluate(observed: Observed, alerts: dict[str, AlertRecord], settings: Settings,
             now: datetime) -> tuple[list[AlertRecord], list[AlertMessage]]:
    """The problems' new states (only those that change) and the messages to queue."""
    day = now.astimezone(ZoneInfo(settings.timezone)).date().isoformat()
    changes: list[AlertRecord] = []
    messages: list[AlertMessage] = []
    present = problems(observed, settings, now)
    for problem in present:
        known = alerts.get(problem.key)
        record = known if known is not None and known.open else AlertRecord(
            problem.key, open=True, opened_at=now, last_alert_day=known.last_alert_day if known else None)
        record = replace(record, detail=problem.title)
        if not record.announced and record.last_alert_day != day:  # at most one alert a day
            record = replace(record, announced=True, last_alert_day=day)
            messages.append(_message(f"alert:{problem.key}:{day}", problem.key, f"digestbot alert: {problem.title}",
                                     problem.text, settings))
        if problem.event:
            record = replace(record, open=False, resolved_at=now, announced=False)
        if record != known:
            changes.append(record)
    keys = {problem.key for problem in present}
    sources = {source.name for source in observed.sources}
    for key, known in alerts.items():
        if not known.open or key in keys:
            continue
        changes.append(replace(known, open=False, resolved_at=now, announced=False))
        kind, _, name = key.partition(":")
        if known.announced and (kind not in (SOURCE_FAILING, SOURCE_QUIET) or name in sources):
            # (a source taken out of the config is no recovery: its alert closes silently)
            messages.append(_message(f"recovered:{key}:{known.opened_at:%Y-%m-%dT%H:%M:%S}", key,
                                     f"digestbot recovered: {_recovery(kind, name)}",
                                     f"Recovered: {_recovery(kind, name)}.\nThe problem was: {known.detail}, "
                                     f"since {_when(known.opened_at, ZoneInfo(settings.timezone))}; resolved at "
                                     f"{_when(now, ZoneInfo(settings.timezone))}.", settings))
    return changes, messages


def _recovery(kind: str, name: str) -> str:
    return {SOURCE_FAILING: f"source {name} is polled successfully again",
            SOURCE_QUIET: f"source {name} lists new papers again",
            DIGESTS_FAILED: "no failed digests are left"}.get(kind, f"{kind} {name}".strip())


def _message(period: str, problem: str, subject: str, text: str, settings: Settings) -> AlertMessage:
    return AlertMessage(period, problem, subject, f"{text}\n\n-- {settings.signature}\n", settings.targets)


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return "never" if moment is None else f"{moment.astimezone(zone):%a %d %b %Y %H:%M %Z}"


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.0f} hours" if hours <= 120 else f"{hours / 24:.1f} days"


def _polls(n: int) -> str:
    return f"{n} poll{'s' if n != 1 else ''}"


# --- observing and recording --------------------------------------------------------------------------

def observe(config: Config, store: Store, now: datetime, *, crashes: Sequence[Heartbeat] = (),
            restarted: Heartbeat | None = None) -> Observed:
    book = AlertBook(store)
    names = [options.name for options in config.sources]
    states = store.source_states()
    news = book.news(names, now - HISTORY)
    views = tuple(SourceView(name, state.failures, state.last_success, state.last_error, tuple(news[name]))
                  for name in names if (state := states.get(name)) is not None)
    failed, error = book.failed_digests()
    return Observed(views, failed, error, tuple(crashes), restarted)


def check(config: Config, store: Store, now: datetime, *, crashes: Sequence[Heartbeat] = (),
          restarted: Heartbeat | None = None) -> int:
    """Observe, evaluate, and queue what is to be told; how many messages were queued. Without `[alerts]`
    it does nothing; a database error is logged (the next check tries again), never raised into a pass."""
    if config.alerts is None:
        return 0
    settings = Settings.of(config, config.alerts)
    try:
        observed = observe(config, store, now, crashes=crashes, restarted=restarted)
        book = AlertBook(store)
        if evaluate(observed, book.alerts(), settings, now) == ([], []):
            return 0  # the usual case: nothing changes, nothing written
        _, messages = book.update(lambda alerts: evaluate(observed, alerts, settings, now), now)
    except StoreError as exc:
        log.error("alerts not checked (the next send pass tries again): %s", exc)
        return 0
    for message in messages:
        log.warning("%s (queued for %s)", message.subject, ", ".join(target for _, target in message.targets))
    return len(messages)


def crashed_daemons(heartbeats: Sequence[Heartbeat], host: str, pid: int, started_at: datetime) -> list[Heartbeat]:
    """Heartbeat rows of this host left by a daemon that did not stop cleanly: its process is gone, or
    its pid is ours but the row predates us (a container's daemon is pid 1 every time)."""
    return [beat for beat in heartbeats if beat.host == host and (
        beat.started_at < started_at if beat.pid == pid else not _running(beat.pid))]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def daemon_started(config: Config, store: Store, me: Heartbeat) -> int:
    """At the daemon's start: a crash of an earlier daemon of this host is told (then its stale heartbeat
    row goes, so the next start does not tell it again); how many messages were queued."""
    if config.alerts is None:
        return 0
    try:
        crashed = crashed_daemons(store.heartbeats(), me.host, me.pid, me.started_at)
    except StoreError as exc:
        log.error("cannot look for an earlier daemon's crash: %s", exc)
        return 0
    if not crashed:
        return 0
    queued = check(config, store, me.started_at, crashes=crashed, restarted=me)
    for beat in crashed:
        try:
            store.forget_heartbeat(beat.host, beat.pid)
        except StoreError as exc:
            log.warning("the heartbeat row of crashed pid %d was not removed: %s", beat.pid, exc)
    return queued


# --- what the send pass sends -------------------------------------------------------------------------

def delivery(config: Config, store: Store, row: Claim) -> tuple[Message, Envelope]:
    """The message and envelope of a claimed alert digest (subscription ALERTS)."""
    message = AlertBook(store).message(row.period)
    if message is None:
        raise DeliveryError(f"alert {row.period} has no stored text (was the alert_message table emptied?)",
                            permanent=True)
    domain = parseaddr(config.email.sender)[1].rpartition("@")[2] if config.email else "digestbot.localhost"
    slack = f"*{_slack(message.subject)}*\n{_slack(message.text)}"[:SLACK_SECTION]
    post = SlackPost(text=_slack(message.subject), blocks=[{"type": "section", "text": {"type": "mrkdwn",
                                                                                        "text": slack}}])
    return (Message(subject=message.subject, text=message.text, slack_posts=[post]),
            Envelope(target=row.target, subscription="digestbot alerts", subscription_id=ALERTS,
                     message_id=f"<alert-{row.id}.{store.installation}@{domain}>",
                     list_id=f"digestbot alerts <alerts.{domain}>"))


def _slack(text: str) -> str:
    """Slack's three control characters, escaped (a source's error text may hold any)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
