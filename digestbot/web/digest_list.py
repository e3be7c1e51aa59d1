"""A reader's own list of one digest's papers: where "…and N more" under a capped digest leads.

    GET /digest?token=D     every paper of the digest, in the digest's rank order: title (linked to the
                            paper), authors, why it matched, and its "more like this" / "not for me" links

D is a "digest" token (tokens.py) signed for (subscription, target, digest id), made by digest.py when
readers' links are on. The digest row must still be that subscription's and that target's; a bad token,
or a digest that is gone, is a 400 page. The page only reads.
"""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..digest import rank
from ..errors import StoreError
from ..models import Match
from ..render import authors_short, safe_url, title_link, why
from . import tokens
from .site import Site

log = logging.getLogger(__name__)



class DigestList:
    def __init__(self, web: Site):
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/digest", self.digest_page, methods=["GET"])]

    def _matches(self, found: tokens.Token) -> list[Match] | None:
        """The digest's matches, ranked; None when the digest is not (or no longer) the token's."""
        assert found.digest is not None
        record = self.web.store.digest(found.digest)
        if record is None or (record.subscription_id, record.target) != (found.subscription_id, found.target):
            return None
        return rank(self.web.store.digest_matches(found.digest))

    def vote_path(self, found: tokens.Token, paper: str) -> str:
        """The paper's vote link for this reader (add `&v=up` or `&v=down`), as the digest's own links."""
        return "/vote?" + urlencode({"token": tokens.sign(self.web.secret, "vote", found.subscription_id,
                                                          found.target, paper=paper)})

    async def digest_page(self, request: Request) -> Response:
        try:
            found = tokens.verify(self.web.secret, request.query_params.get("token", ""), "digest")
            if found.digest is None:  # verify() refuses a digest token without one; mypy cannot know
                raise tokens.BadToken("the link's contents are not understood")
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        try:
            matches = await run_in_threadpool(self._matches, found)
        except StoreError as exc:
            log.error("the papers of a digest of %r could not be read: %s", found.subscription_id, exc)
            return self.web.page(503, "Please try again", "The papers could not be read just now; "
                                 "please try again in a few minutes.")
        if matches is None:
            return self.web.bad_link(tokens.BadToken("this digest is no longer kept"))
        papers = [{"title": m.paper.title, "link": safe_url(title_link(m.paper)),
                   "authors": authors_short(m.paper.authors), "why": why(m), "key": m.paper.key,
                   "vote": self.vote_path(found, m.paper.key)} for m in matches]
        html = self.web.pages.get_template("digest.html.j2").render(
            title=f"{self.web.subscription_name(found.subscription_id)}: all {len(papers)} papers",
            target=found.target, papers=papers)
        return HTMLResponse(html)


def routes(web: Site) -> list[Route]:
    return DigestList(web).routes()
