"""The stages wired together: poll(source) and send_due(now), each with its error boundaries.

    poll:  source.collect -> store.record_papers -> matcher.match -> store.record_matches   (one transaction)
    send:  due periods -> store.open_digest -> claim -> rank -> render -> channel.send -> ledger

One source failing never stops the others; one recipient failing never stops the others.
"""
from __future__ import annotations

import logging
import random
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from . import sources
from .channels import Channel, Envelope
from .config import Config, SubscriptionConfig
from .digest import make_digest, rank, unsubscribe_urls
from .errors import DeliveryError, DigestbotError, SourceError, StoreError
from .http import Http
from .matching import Matcher
from .models import Digest, Paper
from .render import Renderer
from .store import DigestRow, Store

log = logging.getLogger(__name__)
RETRY_FIRST, RETRY_MAX = timedelta(minutes=1), timedelta(hours=6)


@dataclass
class Context:
    config: Config
    store: Store
    http: Http
    matcher: Matcher
    renderer: Renderer
    open_channel: Callable[[str], Channel]  # ledger channel ("email" | "slack") -> transport


@dataclass
class PollResult:
    source: str
    seen: int = 0
    new: int = 0
    matched: int = 0
    error: str | None = None


@dataclass
class SendResult:
    sent: list[tuple[str, str, str, int]] = field(default_factory=list)  # (subscription, channel, target, papers)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (subscription, target, error)


def targets(sub: SubscriptionConfig) -> list[tuple[str, str]]:
    return [("email", a) for a in sub.email] + [("slack", c) for c in sub.slack]


def is_fresh(paper: Paper, now: datetime, max_age_days: int) -> bool:
    """No flood: a paper published long before we first saw it is recorded, not delivered."""
    return paper.published is None or paper.published >= now - timedelta(days=max_age_days)


def poll(ctx: Context, name: str, now: datetime, *, send: bool = True) -> PollResult:
    source = sources.build(ctx.config.source(name), ctx.http)
    try:
        memory = ctx.store.source_memory(name)
        papers = source.collect(now, memory)
        with ctx.store.write() as w:
            new = w.record_papers(name, papers, now)
            fresh = [(i, p) for i, p in new if is_fresh(p, now, ctx.config.bot.max_age_days)] if send else []
            ids = {p.key: i for i, p in fresh}
            matches = ctx.matcher.match([p for _, p in fresh])
            w.record_matches([(ids[m.paper.key], m) for m in matches], _all_targets(ctx.config), now)
            w.source_polled(name, now, seen=len(papers), new=len(new), validators=memory.new_validators)
    except (SourceError, StoreError) as exc:
        _record_failure(ctx, name, now, str(exc))
        return PollResult(name, error=str(exc))
    except Exception as exc:  # a bug in one source kind must not stop the other sources (DESIGN 4)
        log.exception("%s: unexpected error while polling", name)
        error = f"source {name!r}: internal error {type(exc).__name__}: {exc} (please report this bug)"
        _record_failure(ctx, name, now, error)
        return PollResult(name, error=error)
    log.info("%s: %d papers listed, %d new, %d recorded without sending (older than %d days), %d matches",
             name, len(papers), len(new), len(new) - len(fresh) if send else 0, ctx.config.bot.max_age_days,
             len(matches))
    return PollResult(name, seen=len(papers), new=len(new), matched=len(matches))


def _record_failure(ctx: Context, name: str, now: datetime, error: str) -> None:
    log.error("%s", error)
    try:
        with ctx.store.write() as w:
            w.source_polled(name, now, error=error)
    except StoreError as exc:
        log.error("could not record the failure of %s: %s", name, exc)


def _all_targets(config: Config) -> dict[str, list[tuple[str, str]]]:
    return {sub.id: targets(sub) for sub in config.subscriptions}


def open_due_digests(ctx: Context, now: datetime) -> None:
    """Turn every subscription whose period has come into digest rows (idempotent per period).

    A digest takes every delivery not yet in a digest; it opens when the latest period (keyed by local
    wall-clock time, see schedule.py) has begun after the oldest of them, so a restart or a DST switch
    can neither repeat a period (its key already has a row) nor lose one (it opens on the next call).
    """
    for sub in ctx.config.subscriptions:
        schedule = ctx.config.schedules[sub.id]
        pending = ctx.store.pending_targets(sub.id)
        if schedule.instant:
            for channel, target, _ in pending:
                ctx.store.open_digest(sub.id, channel, target, f"instant:{now.isoformat()}", now)
            continue
        period = schedule.last_period(now)
        if period is None:
            continue
        waiting = {(c, t) for c, t, oldest in pending if oldest <= period.start}
        for channel, target in targets(sub):
            if (channel, target) in waiting or sub.send_empty:
                ctx.store.open_digest(sub.id, channel, target, period.key, now, allow_empty=sub.send_empty)


def send_due(ctx: Context, now: datetime) -> SendResult:
    open_due_digests(ctx, now)
    result = SendResult()
    subscriptions = {s.id: s for s in ctx.config.subscriptions}
    with ExitStack() as stack:
        channels: dict[str, Channel] = {}
        for row in ctx.store.due_digests(now):
            sub = subscriptions.get(row.subscription)
            if sub is None:
                log.warning("digest %d is for subscription %r, which is no longer configured; left pending",
                            row.id, row.subscription)
                continue
            if not ctx.store.claim(row.id, now):
                continue  # another sender has it
            if row.channel not in channels:
                try:
                    channels[row.channel] = stack.enter_context(ctx.open_channel(row.channel))
                except DigestbotError as exc:
                    ctx.store.digest_failed(row.id, str(exc), retry_at=now + _backoff(row.attempts + 1))
                    log.error("cannot open the %s channel: %s", row.channel, exc)
                    result.failed.append((sub.name, row.target, str(exc)))
                    continue
            _send_one(ctx, row, sub, channels[row.channel], now, result)
    return result


def _send_one(ctx: Context, row: DigestRow, sub: SubscriptionConfig, channel: Channel, now: datetime,
              result: SendResult) -> None:
    digest = build_digest(ctx, row, sub, now)
    try:
        message = ctx.renderer.render(digest)
        sent_id = channel.send(message, envelope(ctx.config, row, sub))
    except DeliveryError as exc:
        retry_at = None if exc.permanent else now + _backoff(row.attempts + 1)
        ctx.store.digest_failed(row.id, str(exc), retry_at=retry_at)
        when = "not retried (permanent)" if retry_at is None else f"will retry after {retry_at:%H:%M} UTC"
        log.error("digest for %r to %s failed: %s; %s", sub.name, row.target, exc, when)
        result.failed.append((sub.name, row.target, str(exc)))
        return
    ctx.store.digest_sent(row.id, sent_id, now)
    log.info("sent %r (%d papers) to %s by %s", sub.name, len(digest.matches), row.target, row.channel)
    result.sent.append((sub.name, row.channel, row.target, len(digest.matches)))


def build_digest(ctx: Context, row: DigestRow, sub: SubscriptionConfig, now: datetime) -> Digest:
    return make_digest(ctx.config, sub, ctx.store.digest_matches(row.id), target=row.target,
                       period_key=row.period, now=now)


__all__ = ["Context", "PollResult", "SendResult", "build_digest", "open_due_digests", "poll", "rank", "run_once",
           "send_due"]


def envelope(config: Config, row: DigestRow, sub: SubscriptionConfig) -> Envelope:
    domain = config.email.sender_address.domain if config.email else "digestbot.localhost"
    return Envelope(target=row.target, subscription=sub.name, subscription_id=sub.id,
                    message_id=f"<digest-{row.id}.{sub.id}@{domain}>", list_id=f"{sub.name} <{sub.id}.{domain}>",
                    unsubscribe=unsubscribe_urls(config, sub, row.target))


def _backoff(attempt: int) -> timedelta:
    delay = min(RETRY_FIRST * 2 ** (attempt - 1), RETRY_MAX)
    return delay * (0.75 + random.random() / 2)


def run_once(ctx: Context, now: datetime, *, send: bool = True) -> tuple[list[PollResult], SendResult]:
    polls = [poll(ctx, options.name, now, send=send) for options in ctx.config.sources]
    if not send:
        return polls, SendResult()
    try:
        return polls, send_due(ctx, now)
    except (StoreError, DigestbotError) as exc:
        log.error("%s", exc)
        return polls, SendResult(failed=[("*", "*", str(exc))])
