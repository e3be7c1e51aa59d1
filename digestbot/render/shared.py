"""The shared work of one send pass: each distinct digest content is loaded and rendered once.

The recipients of one subscription in one period get the same papers, and a Digest carries nothing
about its recipient (digest.py: the footer links are per subscription). So every digest row with the
same (subscription, ledger channel, period, paper ids) gets the same rendered Message; only its
Envelope (To, Message-ID, List-Unsubscribe) is per recipient. The key holds everything a Digest is
made from in a pass (config and `now` are fixed for the pass), and never the target...

...except when the email digests carry readers' personal links (digest.personal_links_secret: bot.public_url
and the [web] secret): then an email's content is its recipient's own (their vote, manage and unsubscribe
links, and the "…and N more" link to their list of this digest row's papers), the key holds the target, and
each recipient's digest is rendered for them (one digest row per target and period: the key is per row).
Installations without the web process keep the shared render.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from ..config import Config, SubscriptionConfig
from ..digest import make_digest, personal_links_secret
from ..models import Match, Message, Paper
from ..store import Store
from ..store.ledger_sql import Claim
from . import Renderer

# subscription id, ledger channel, period key, paper ids, and the target when the content is personal ("" if not)
ContentKey = tuple[str, str, str, tuple[int, ...], str]
PAPERS_KEPT = 20_000  # Papers held across the batches of a pass (a day's new papers; more are built again)


@dataclass(frozen=True, slots=True)
class Content:
    message: Message
    papers: int  # papers shown in the digest (for the log and the result)
    # A personal content's List-Unsubscribe URLs: the very URL of its footer (None: the envelope makes them)
    unsubscribe: tuple[str, ...] | None = None


class Contents:
    """Rendered digests of one send pass, by content key; the least recently used are dropped."""

    def __init__(self, config: Config, store: Store, renderer: Renderer, now: datetime, keep: int = 64):
        self.config, self.store, self.renderer, self.now, self.keep = config, store, renderer, now, keep
        self._papers: dict[int, tuple[int, ...]] = {}
        self._matches: dict[tuple[str, tuple[int, ...]], list[Match]] = {}  # of the loaded batch
        self._paper_objects: dict[int, Paper] = {}  # each paper built once per pass (PAPERS_KEPT at most)
        self._rendered: OrderedDict[ContentKey, Content] = OrderedDict()
        self.secret = personal_links_secret(config)  # None: every content is shared

    def load(self, batch: list[Claim]) -> None:
        """The paper ids of a claimed batch, in one query (instead of a joined ORM query per digest), and
        the matches of its contents not rendered yet, in one more."""
        self._papers = self.store.digest_papers([row.id for row in batch])
        if len(self._paper_objects) > PAPERS_KEPT:
            self._paper_objects.clear()
        wanted = {(row.subscription_id, self._papers[row.id]) for row in batch if row.id in self._papers}
        self._matches = self.store.matches_of_many(sorted(wanted), self._paper_objects)

    def get(self, row: Claim, sub: SubscriptionConfig) -> Content:
        papers = self._papers.get(row.id)
        if papers is None:  # not in the loaded batch (a caller that skipped load)
            papers = self.store.digest_papers([row.id])[row.id]
        personal = self.secret is not None and row.channel == "email"
        key = (sub.id, row.channel, row.period, papers, row.target if personal else "")
        content = self._rendered.get(key)
        if content is not None:
            self._rendered.move_to_end(key)
            return content
        content = self._render(row, sub, papers, personal=personal)
        self._rendered[key] = content
        if len(self._rendered) > self.keep:
            self._rendered.popitem(last=False)
        return content

    def _render(self, row: Claim, sub: SubscriptionConfig, papers: tuple[int, ...], *, personal: bool) -> Content:
        matches = self._matches.get((sub.id, papers))
        if matches is None:
            matches = self.store.matches_of(sub.id, papers)
        target = row.target if personal else None
        digest = make_digest(self.config, sub, matches, channel=row.channel, period_key=row.period, now=self.now,
                             target=target, secret=self.secret, digest_id=row.id if personal else None)
        email = row.channel == "email"  # the ledger channel: email (SMTP or .eml) carries text + HTML, never blocks
        return Content(self.renderer.render(digest, html=email, slack=not email), len(digest.matches),
                       (digest.unsubscribe_url,) if personal else None)
