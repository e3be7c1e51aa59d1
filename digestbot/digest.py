"""What the subscribers of one subscription get for one period: the ranked, capped `Digest` and its links.

Shared by the sender (`render.shared.Contents`) and `digestbot preview`, so a
preview shows exactly what would be sent.

Without readers' links (no bot.public_url, or no [web] secret), a Digest holds nothing about one
recipient: its footer links are per subscription, so the send pass renders it once and sends the same
body to every recipient of that subscription and period. What is personal (To, Message-ID, the
List-Unsubscribe header) travels in the `Envelope` and becomes headers only.

With readers' links on (`personal_links_secret`), an email digest is made for one recipient (`target`):
each paper carries its signed "more like this" / "not for me" links, and the footer the recipient's
"Manage your subscriptions" link and their own one-click unsubscribe URL (the List-Unsubscribe one);
given the digest's id (its ledger row), the "…and N more" link opens the reader's own list of all that
digest's papers (`/digest?token=`, web/digest_list.py) instead of the listing the papers came from.
The send pass then renders once per recipient (render/shared.py keys the content by target too).

A Slack digest stays shared by all the channels of its subscription: its vote buttons carry only the
subscription and the paper (`slack_buttons`); the click itself says which channel it came from.
"""
from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from .config import Config, SubscriptionConfig
from .errors import ConfigError
from .models import KEY_FORMAT, Digest, Match, VoteLinks
from .web import tokens

DEFAULT_LISTING = "https://huggingface.co/papers"


def rank(matches: list[Match]) -> list[Match]:
    """Most relevant first, then most upvoted; the title makes the order total (stable digests)."""
    return sorted(matches, key=lambda m: (-m.score, -m.paper.upvotes, m.paper.title))


def unsubscribe_urls(config: Config, sub: SubscriptionConfig, target: str) -> tuple[str, ...]:
    """List-Unsubscribe targets: the recipient's one-click https URL (`digestbot serve`), signed for
    this subscription and target, when bot.public_url and [web] secret_env are set; else a mailto to
    the sender (`check` warns when public_url is set without the secret)."""
    secret = config.link_secret() if config.bot.public_url else None
    if config.bot.public_url and secret:
        token = tokens.sign(secret, "unsubscribe", sub.id, target)
        return (f"{config.bot.public_url.rstrip('/')}/unsubscribe?{urlencode({'token': token})}",)
    sender = _addr_spec(config.email.sender) if config.email else "digestbot@localhost"
    return (f"mailto:{sender}?subject={quote(f'unsubscribe {sub.id}')}",)


@lru_cache(maxsize=8)
def _addr_spec(sender: str) -> str:
    """Parsed once per pass, not once per recipient (parsing an address costs more than the URL)."""
    return parseaddr(sender)[1]


def footer_unsubscribe_url(config: Config, sub: SubscriptionConfig) -> str:
    """The body's unsubscribe link, the same for every recipient (the body is shared): the page of
    `digestbot serve` that tells how to leave (the mail client's Unsubscribe button carries the
    recipient's own signed link), else a mailto that names the subscription (the sender's own address
    says who). A recipient's personal one-click URL is only ever in their List-Unsubscribe header."""
    return _footer_url(config.bot.public_url if config.web.secret_env else None,
                       config.email.sender if config.email else None, sub.id)


@lru_cache(maxsize=4096)
def _footer_url(public_url: str | None, sender: str | None, subscription_id: str) -> str:
    """Made once per subscription, not once per digest (quoting cost more than the rest of a Digest)."""
    if public_url:
        return f"{public_url.rstrip('/')}/unsubscribe"
    return f"mailto:{_addr_spec(sender) if sender else 'digestbot@localhost'}?subject=" \
           f"{quote(f'unsubscribe {subscription_id}')}"


def personal_links_secret(config: Config) -> bytes | None:
    """The secret that signs readers' personal links, when the digests carry them: bot.public_url set,
    and [web] secret_env naming a variable that is set. None otherwise (the shared body of old)."""
    if not config.bot.public_url or not config.web.secret_env:
        return None
    try:
        return config.link_secret()
    except ConfigError:  # the variable is missing: the envelope's List-Unsubscribe says so when sending
        return None


def personal_links(config: Config, secret: bytes, sub: SubscriptionConfig, target: str,
                   matches: list[Match]) -> tuple[str, str, tuple[VoteLinks, ...]]:
    """One recipient's links: unsubscribe (the same URL as List-Unsubscribe), manage, and each paper's
    two votes, all signed for (subscription, target[, paper])."""
    base = (config.bot.public_url or "").rstrip("/")
    votes = []
    for match in matches:
        key = match.paper.key
        token = urlencode({"token": tokens.sign(secret, "vote", sub.id, target, paper=key)})
        votes.append(VoteLinks(paper=key, up=f"{base}/vote?{token}&v=up", down=f"{base}/vote?{token}&v=down"))
    manage = urlencode({"token": tokens.sign(secret, "manage", sub.id, target)})
    return unsubscribe_urls(config, sub, target)[0], f"{base}/manage?{manage}", tuple(votes)


def period_start(period_key: str, zone: str, now: datetime) -> datetime:
    """The local start of a period from its key ("2026-11-22T08:00"); `now` for instant digests."""
    start = _period_start(period_key, zone)
    return now.astimezone(ZoneInfo(zone)) if start is None else start


@lru_cache(maxsize=1024)
def _period_start(period_key: str, zone: str) -> datetime | None:
    """Parsed once per key and zone (strptime cost more than the rest of making a digest)."""
    try:
        return datetime.strptime(period_key, KEY_FORMAT).replace(tzinfo=ZoneInfo(zone))
    except ValueError:
        return None


def digest_list_url(config: Config, secret: bytes, sub: SubscriptionConfig, target: str, digest_id: int) -> str:
    """The reader's own page listing every paper of digest `digest_id` (signed for subscription, target, id)."""
    token = urlencode({"token": tokens.sign(secret, "digest", sub.id, target, digest=digest_id)})
    return f"{(config.bot.public_url or '').rstrip('/')}/digest?{token}"


def slack_buttons(config: Config, channel: str) -> bool:
    """Whether each paper of a digest on `channel` carries vote buttons: Slack through the bot token (a
    button's click names the channel, which must be one of the subscription's `slack` list: an incoming
    webhook's channel is not), with the Slack app's signing secret configured for `digestbot serve`."""
    return channel == "slack" and config.slack is not None and bool(config.slack.signing_secret_env)



def mail_domain(config: Config) -> str:
    """The domain of the sender's address: Message-IDs and List-Ids are made under it."""
    return _sender_domain(config.email.sender) if config.email else "digestbot.localhost"


@lru_cache(maxsize=8)
def _sender_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2]


def list_id(config: Config, sub: SubscriptionConfig) -> str:
    """A subscription's List-Id: mail clients group and filter its digests by it."""
    return f"{sub.name} <{sub.id}.{mail_domain(config)}>"


def make_digest(config: Config, sub: SubscriptionConfig, matches: list[Match], *, channel: str,
                period_key: str, now: datetime, target: str | None = None,
                secret: bytes | None = None, digest_id: int | None = None) -> Digest:
    """`channel` is the ledger channel (email | slack | slack_webhook). Without `target` and `secret`
    (personal_links_secret) the digest is the same for every recipient of the subscription; with both,
    it is `target`'s own, with their personal links, and with `digest_id` too (the ledger row: not in a
    preview) its "…and N more" links to that reader's list of the digest's papers."""
    ranked = rank(matches)
    zone = sub.timezone or config.bot.timezone
    start = period_start(period_key, zone, now)
    where = "this address" if channel == "email" else "this Slack channel"
    shown = ranked[: sub.max_papers]
    unsubscribe, manage, votes = footer_unsubscribe_url(config, sub), "", tuple[VoteLinks, ...]()
    more_url, more_label = sub.listing_url or DEFAULT_LISTING, "see the listing"
    if target is not None and secret:
        unsubscribe, manage, votes = personal_links(config, secret, sub, target, shown)
        if digest_id is not None:
            more_url, more_label = digest_list_url(config, secret, sub, target, digest_id), "see them all"
    return Digest(subscription=sub.name, subscription_id=sub.id, period=start.strftime("%a %d %b %Y"),
                  matches=shown, more=max(0, len(ranked) - sub.max_papers),
                  query=sub.query, topics=tuple(sub.topics), period_start=start,
                  more_url=more_url, more_label=more_label,
                  unsubscribe_url=unsubscribe, manage_url=manage, vote_links=votes,
                  slack_buttons=slack_buttons(config, channel),
                  manage=f"Schedule {sub.schedule!r}, at most {sub.max_papers} papers, sent to {where}."
                         + ("" if manage else " To change it, ask whoever runs this digest bot."))
