"""The shared work of one send pass: each distinct digest content is loaded and rendered once.

The recipients of one subscription in one period get the same papers, and a Digest carries nothing
about its recipient (digest.py: the footer links are per subscription). So every digest row with the
same (subscription, ledger channel, period, paper ids) gets the same rendered Message; only its
Envelope (To, Message-ID, List-Unsubscribe) is per recipient. The key holds everything a Digest is
made from in a pass (config and `now` are fixed for the pass), and never the target.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..config import SubscriptionConfig
from ..digest import make_digest
from ..store.ledger import Claim
from ..models import Message

if TYPE_CHECKING:
    from ..pipeline import Context

ContentKey = tuple[str, str, str, tuple[int, ...]]  # subscription id, ledger channel, period key, paper ids


@dataclass(frozen=True, slots=True)
class Content:
    message: Message
    papers: int  # papers shown in the digest (for the log and the result)


class Contents:
    """Rendered digests of one send pass, by content key; the least recently used are dropped."""

    def __init__(self, ctx: "Context", now: datetime, keep: int = 64):
        self.ctx, self.now, self.keep = ctx, now, keep
        self._papers: dict[int, tuple[int, ...]] = {}
        self._rendered: OrderedDict[ContentKey, Content] = OrderedDict()
        self.renders = 0  # how many times the renderer ran (tests check the sharing with it)

    def load(self, batch: list[Claim]) -> None:
        """The paper ids of a claimed batch, in one query (instead of a joined ORM query per digest)."""
        self._papers = self.ctx.store.digest_papers([row.id for row in batch])

    def get(self, row: Claim, sub: SubscriptionConfig) -> Content:
        papers = self._papers.get(row.id)
        if papers is None:  # not in the loaded batch (a caller that skipped load)
            papers = self.ctx.store.digest_papers([row.id])[row.id]
        key = (sub.id, row.channel, row.period, papers)
        content = self._rendered.get(key)
        if content is not None:
            self._rendered.move_to_end(key)
            return content
        content = self._render(row, sub, papers)
        self._rendered[key] = content
        if len(self._rendered) > self.keep:
            self._rendered.popitem(last=False)
        return content

    def _render(self, row: Claim, sub: SubscriptionConfig, papers: tuple[int, ...]) -> Content:
        matches = self.ctx.store.matches_of(sub.id, papers)
        digest = make_digest(self.ctx.config, sub, matches, channel=row.channel, period_key=row.period, now=self.now)
        self.renders += 1
        return Content(self.ctx.renderer.render(digest), len(digest.matches))
