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
from .config import Config, SubscriptionConfig
from .digest import make_digest
from .models import KEY_FORMAT, Match, Message
from .render import Renderer

FILES = ("digest.html", "digest.txt", "slack.json")


def preview(config: Config, renderer: Renderer, sub: SubscriptionConfig, matches: list[Match], now: datetime, *,
            out: Path) -> list[Path]:
    """Render the digest `matches` make for `sub` now into `out` (the three files); returns their paths.
    Which matches: App.preview (the waiting ones, or what the subscription's matcher finds)."""
    key = now.astimezone(config.schedules[sub.id].zone).strftime(KEY_FORMAT)
    digest = make_digest(config, sub, matches, channel="email" if sub.email else "slack", period_key=key, now=now)
    return write(renderer.render(digest), out)


def write(message: Message, out: Path) -> list[Path]:
    private.make_folder(out)  # a digest shows its subscription's interests and recipients
    slack = [{"text": post.text, "blocks": post.blocks} for post in message.slack_posts]
    contents = (message.html, message.text, json.dumps(slack, indent=2, ensure_ascii=False) + "\n")
    paths = [out / name for name in FILES]
    for path, content in zip(paths, contents, strict=True):
        private.write(path, content.encode("utf-8"))
    return paths
