"""What one subscriber gets for one period: the ranked, capped `Digest` and its links.

Shared by the sender (`pipeline.build_digest`) and `digestbot preview`, so a preview shows exactly
what would be sent.
"""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from .config import Config, SubscriptionConfig
from .models import Digest, Match
from .schedule import KEY_FORMAT

DEFAULT_LISTING = "https://huggingface.co/papers"


def rank(matches: list[Match]) -> list[Match]:
    """Most relevant first, then most upvoted; the title makes the order total (stable digests)."""
    return sorted(matches, key=lambda m: (-m.score, -m.paper.upvotes, m.paper.title))


def unsubscribe_urls(config: Config, sub: SubscriptionConfig, target: str) -> tuple[str, ...]:
    """List-Unsubscribe targets: a mailto to the sender, plus a one-click https URL with bot.public_url."""
    sender = config.email.sender_address.addr_spec if config.email else "digestbot@localhost"
    urls = [f"mailto:{sender}?subject={quote(f'unsubscribe {sub.id}')}"]
    if config.bot.public_url:
        query = urlencode({"list": sub.id, "target": target})
        urls.insert(0, f"{config.bot.public_url.rstrip('/')}/unsubscribe?{query}")
    return tuple(urls)


def period_start(period_key: str, zone: str, now: datetime) -> datetime:
    """The local start of a period from its key ("2026-11-22T08:00"); `now` for instant digests."""
    try:
        return datetime.strptime(period_key, KEY_FORMAT).replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        return now.astimezone(ZoneInfo(zone))


def make_digest(config: Config, sub: SubscriptionConfig, matches: list[Match], *, target: str,
                period_key: str, now: datetime) -> Digest:
    ranked = rank(matches)
    zone = sub.timezone or config.bot.timezone
    start = period_start(period_key, zone, now)
    channel = "this Slack channel" if target.startswith(("#", "C", "G")) and "@" not in target else target
    return Digest(subscription=sub.name, subscription_id=sub.id, period=start.strftime("%a %d %b %Y"),
                  matches=ranked[: sub.max_papers], more=max(0, len(ranked) - sub.max_papers),
                  query=sub.query, topics=tuple(sub.topics), period_start=start,
                  more_url=sub.listing_url or DEFAULT_LISTING,
                  unsubscribe_url=unsubscribe_urls(config, sub, target)[0],
                  manage=f"Schedule {sub.schedule!r}, at most {sub.max_papers} papers, sent to {channel}. "
                         f"To change it, edit subscription {sub.id!r} in the digestbot config "
                         f"(`digestbot subs show {sub.id}`) or ask the bot's admin.")
