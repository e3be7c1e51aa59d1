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

A large pass renders apart, in a child process (apart.py): `load` hands it the batch's new contents in
chunks, and `get` waits for the one it needs. The cache and its keys stay here, in the pass's process.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import datetime

from ..config import Config, SubscriptionConfig
from ..digest import personal_links_secret
from ..models import Match, Paper
from ..store import Store
from ..store.ledger_sql import Claim
from . import Renderer
from .apart import CHUNK, RenderProcess, worth_it
from .content import Content, RenderJob, render_content

log = logging.getLogger(__name__)
# subscription id, ledger channel, period key, paper ids, and the target when the content is personal ("" if not)
ContentKey = tuple[str, str, str, tuple[int, ...], str]
STOPPED = "rendering apart stopped (%s: %s); this pass renders in its own thread from now on"
PAPERS_KEPT = 20_000  # Papers held across the batches of a pass (a day's new papers; more are built again)


class RenderFailed(Exception):
    """A digest's rendering failed in the child process (its error, as text: an exception may not pickle)."""


class Contents:
    """Rendered digests of one send pass, by content key; the least recently used are dropped.

    A context manager: it renders apart (apart.py) once the pass is large enough, `expected` digests
    due or as many loaded, and stops that child process when the block ends."""

    def __init__(self, config: Config, store: Store, renderer: Renderer, now: datetime, keep: int = 64, *,
                 subscriptions: Mapping[str, SubscriptionConfig] | None = None, expected: int = 0):
        self.config, self.store, self.renderer, self.now, self.keep = config, store, renderer, now, keep
        self.subscriptions = subscriptions or {}
        self.expected, self.loaded = expected, 0
        self.apart: RenderProcess | None = None
        self._apart_tried = False  # started once per pass at most: not again after it stopped
        self._papers: dict[int, tuple[int, ...]] = {}
        self._matches: dict[tuple[str, tuple[int, ...]], list[Match]] = {}  # of the loaded batch
        self._paper_objects: dict[int, Paper] = {}  # each paper built once per pass (PAPERS_KEPT at most)
        self._rendered: OrderedDict[ContentKey, Content] = OrderedDict()
        self._failed: dict[ContentKey, str] = {}  # contents whose rendering failed in the child
        self._pending: dict[ContentKey, tuple[Future[list[Content | str]], int, RenderJob]] = {}  # handed apart
        self.secret = personal_links_secret(config)  # None: every content is shared

    def __enter__(self) -> Contents:
        self._start_apart()  # now, when the pass expects enough: the child starts while the first chunk opens
        return self

    def __exit__(self, *exc: object) -> None:
        if self.apart is not None:
            self.apart.close()
            self.apart = None

    def load(self, batch: list[Claim]) -> None:
        """The paper ids of a claimed batch, in one query (instead of a joined ORM query per digest), and
        the matches of its contents not rendered yet, in one more; rendering apart, those contents are
        handed to the child now, in order, CHUNK at a time."""
        self._papers = self.store.digest_papers([row.id for row in batch])
        self._pending.clear()  # the last batch's: a digest the pass did not send after all (taken over, down)
        if len(self._paper_objects) > PAPERS_KEPT:
            self._paper_objects.clear()
        wanted = {(row.subscription_id, self._papers[row.id]) for row in batch if row.id in self._papers}
        self._matches = self.store.matches_of_many(sorted(wanted), self._paper_objects)
        self.loaded += len(batch)
        self._start_apart()
        if self.apart is not None and self.apart.started():  # until then, rendered here (apart.py)
            self._hand_over(batch)

    def _start_apart(self) -> None:
        """Render apart from now on if the pass is large enough (once: not again after the child stopped)."""
        if not self._apart_tried and worth_it(max(self.expected, self.loaded)):
            self._apart_tried = True
            try:
                self.apart = RenderProcess(self.config, self.renderer.folder, self.now, self.secret)
            except Exception as exc:  # none to be had (its Python gone)
                log.warning(STOPPED, type(exc).__name__, exc)

    def get(self, row: Claim, sub: SubscriptionConfig) -> Content:
        papers = self._papers.get(row.id)
        if papers is None:  # not in the loaded batch (a caller that skipped load)
            papers = self.store.digest_papers([row.id])[row.id]
        key = self._key(row, sub, papers)
        content = self._rendered.get(key)
        if content is not None:
            self._rendered.move_to_end(key)
            return content
        if key in self._failed:  # the child's error for this content: the same for each of its recipients
            raise RenderFailed(self._failed[key])
        pending = self._pending.pop(key, None)
        try:
            content = self._received(*pending) if pending is not None else \
                render_content(self.config, self.renderer, self.now, self.secret, self._job(row, sub, papers))
        except RenderFailed as exc:
            self._failed[key] = str(exc)
            raise
        self._rendered[key] = content
        if len(self._rendered) > self.keep:
            self._rendered.popitem(last=False)
        return content

    def _key(self, row: Claim, sub: SubscriptionConfig, papers: tuple[int, ...]) -> ContentKey:
        personal = self.secret is not None and row.channel == "email"
        return sub.id, row.channel, row.period, papers, row.target if personal else ""

    def _job(self, row: Claim, sub: SubscriptionConfig, papers: tuple[int, ...]) -> RenderJob:
        matches = self._matches.get((sub.id, papers))
        if matches is None:
            matches = self.store.matches_of(sub.id, papers)
        personal = self.secret is not None and row.channel == "email"
        return RenderJob(sub, matches, row.channel, row.period, row.target if personal else None,
                         row.id if personal else None)

    def _hand_over(self, batch: list[Claim]) -> None:
        assert self.apart is not None
        new: dict[ContentKey, RenderJob] = {}  # in the batch's order
        for row in batch:
            sub = self.subscriptions.get(row.subscription_id)
            papers = self._papers.get(row.id)
            if sub is None or papers is None:
                continue  # an alert, or a subscription that left the config: the pass's thread decides
            key = self._key(row, sub, papers)
            if key not in self._rendered and key not in self._pending and key not in new:
                new[key] = self._job(row, sub, papers)
        keys, jobs = list(new), list(new.values())
        for start in range(0, len(jobs), CHUNK):
            try:
                future = self.apart.submit(jobs[start:start + CHUNK])
            except Exception as exc:  # the child died since the last batch, or never started (apart.ChildGone)
                self._stop_apart(exc)
                return  # the jobs not handed over are rendered here, by `get` (and those handed over: `_received`)
            for k, key in enumerate(keys[start:start + CHUNK]):
                self._pending[key] = (future, k, jobs[start + k])

    def _received(self, future: Future[list[Content | str]], index: int, job: RenderJob) -> Content:
        """The child's content for a job; if the child is gone, this job (and every later one) is
        rendered here instead."""
        try:
            result = future.result()[index]
        except Exception as exc:  # the child died or never started (apart.ChildGone), a pickling error
            self._stop_apart(exc)
            return render_content(self.config, self.renderer, self.now, self.secret, job)
        if isinstance(result, str):
            raise RenderFailed(result)
        return result

    def _stop_apart(self, exc: Exception) -> None:
        """The child is gone (or never came): the rest of the pass renders in its own thread."""
        if self.apart is not None:
            log.warning(STOPPED, type(exc).__name__, exc)
            self.apart.close()
            self.apart = None
