"""`digestbot preview`: a subscription's next digest, rendered to files, with nothing sent.

Without `days`: the deliveries waiting for the subscription's next digest (the ledger is only read).
With `days`: the subscription's query run over the papers first seen in the last N days, as if they
had all been new — to try a query or a template before the first real digest.
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from . import private
from .config import Config
from .digest import make_digest
from .matching import Matcher
from .matching.similar import SimilarityMatcher
from .models import Match, Message
from .render import Renderer
from .schedule import KEY_FORMAT
from .store import Store

FILES = ("digest.html", "digest.txt", "slack.json")
MatcherLike = Matcher | SimilarityMatcher


def preview_matches(store: Store, sub_id: str, days: float | None, matcher: MatcherLike | None) -> list[Match]:
    """The waiting matches; with `days`, what `matcher` (the subscription's own, as `subs test` uses
    it: cli.matcher_of) finds among the papers first seen in the last `days` days."""
    if days is None:
        return store.pending_matches(sub_id)
    if matcher is None:
        raise ValueError("preview over the last N days needs the subscription's matcher")
    return matcher.match(store.papers(days=days))


def preview(config: Config, store: Store, name: str, now: datetime, *, days: float | None,
            out: Path, matcher: MatcherLike | None = None) -> list[Path]:
    """Write the three renderings into `out`; returns their paths."""
    sub = config.subscription(name)
    key = now.astimezone(config.schedules[sub.id].zone).strftime(KEY_FORMAT)
    digest = make_digest(config, sub, preview_matches(store, sub.id, days, matcher),
                         channel="email" if sub.email else "slack", period_key=key, now=now)
    templates = config.resolve(config.bot.templates) if config.bot.templates else None
    return write(Renderer(templates).render(digest), out)


def write(message: Message, out: Path) -> list[Path]:
    private.make_folder(out)  # a digest shows its subscription's interests and recipients
    slack = [{"text": post.text, "blocks": post.blocks} for post in message.slack_posts]
    contents = (message.html, message.text, json.dumps(slack, indent=2, ensure_ascii=False) + "\n")
    paths = [out / name for name in FILES]
    for path, content in zip(paths, contents):
        private.write(path, content.encode("utf-8"))
    return paths
