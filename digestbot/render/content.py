"""A digest's content: what a send pass renders once per distinct digest (shared.py), in its own thread
or in a child process (apart.py), with the same function."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..config import Config, SubscriptionConfig
from ..digest import make_digest
from ..models import Match, Message
from . import Renderer


@dataclass(frozen=True, slots=True)
class Content:
    message: Message
    papers: int  # papers shown in the digest (for the log and the result)
    # A personal content's List-Unsubscribe URLs: the very URL of its footer (None: the envelope makes them)
    unsubscribe: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class RenderJob:
    """What one digest's content is made from (Contents._render's arguments)."""
    sub: SubscriptionConfig
    matches: list[Match]
    channel: str  # the ledger channel
    period: str
    target: str | None  # the recipient, for a personal content (else None)
    digest_id: int | None  # the ledger row, for a personal content


def render_content(config: Config, renderer: Renderer, now: datetime, secret: bytes | None, job: RenderJob) -> Content:
    """A digest's content: the one function both sides render with."""
    digest = make_digest(config, job.sub, job.matches, channel=job.channel, period_key=job.period, now=now,
                         target=job.target, secret=secret, digest_id=job.digest_id)
    email = job.channel == "email"  # the ledger channel: email (SMTP or .eml) carries text + HTML, never blocks
    return Content(renderer.render(digest, html=email, slack=not email), len(digest.matches),
                   (digest.unsubscribe_url,) if job.target is not None else None)
