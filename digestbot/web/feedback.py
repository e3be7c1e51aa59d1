"""Readers' feedback on papers: the "more like this" / "not for me" links of each paper in a digest.

    GET  /vote?token=T&v=up|down    a page with one button; a GET records nothing (link scanners GET too)
    POST /vote?token=T&v=up|down    records the vote (replacing the reader's earlier one on this paper);
                                    the page says "Noted" with an undo button
    POST /vote/undo?token=T         removes the reader's vote on the paper

T is a "vote" token (tokens.py) signed for (subscription, target, paper key): it votes on that one paper
for that one reader, either way (`v` is not signed: a reader may change their mind with the other link).
A bad token or `v` is a 400 page and nothing is recorded.
"""
from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import StoreError
from . import tokens
from .site import Site

log = logging.getLogger(__name__)
LABELS = {"up": "More like this", "down": "Not for me"}



class Feedback:
    def __init__(self, web: Site):
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/vote", self.vote_page, methods=["GET"]),
                Route("/vote", self.vote, methods=["POST"]),
                Route("/vote/undo", self.undo, methods=["POST"])]

    def _token(self, request: Request) -> tokens.Token:
        found = tokens.verify(self.web.secret, request.query_params.get("token", ""), "vote")
        if found.paper is None:  # verify() refuses a vote token without one; mypy cannot know
            raise tokens.BadToken("the link's contents are not understood")
        return found

    def _wanted(self, request: Request) -> str | None:
        choice = request.query_params.get("v", "")
        return choice if choice in LABELS else None

    def _title(self, paper: str) -> str:
        """The paper's title, as the reader saw it in the digest (its key when it is not stored)."""
        found = self.web.store.papers_by_keys([paper])
        return f"“{found[0].title}”" if found else f"paper {paper}"

    def _bad_choice(self) -> Response:
        return self.web.page(400, "This link does not work", "The link does not say which way to vote.",
                             "Nothing was changed. Use a link of a recent digest.")

    async def vote_page(self, request: Request) -> Response:
        try:
            found = self._token(request)
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        choice = self._wanted(request)
        if choice is None:
            return self._bad_choice()
        assert found.paper is not None
        action = "/vote?" + urlencode({"token": request.query_params["token"], "v": choice})
        name = self.web.subscription_name(found.subscription_id)
        try:
            title = await run_in_threadpool(self._title, found.paper)
        except StoreError:
            title = f"paper {found.paper}"  # the page still works: the button records the vote later
        return self.web.page(200, f"{LABELS[choice]}?",
                             f"{title}, in {name}, for {found.target}.",
                             "Your vote helps choose the papers of your next digests.",
                             form=(action, f"{LABELS[choice]}"))

    async def vote(self, request: Request) -> Response:
        await request.body()  # read (the guard caps it); the query decides
        try:
            found = self._token(request)
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        choice = self._wanted(request)
        if choice is None:
            return self._bad_choice()
        assert found.paper is not None
        try:
            await run_in_threadpool(self.web.store.record_vote, found.subscription_id, found.target,
                                    found.paper, choice, datetime.now(UTC))
            title = await run_in_threadpool(self._title, found.paper)
        except StoreError as exc:
            log.error("a vote on %r could not be recorded: %s", found.subscription_id, exc)
            return self.web.page(503, "Please try again", "Your vote could not be recorded just now. "
                                 "Nothing was changed; please try again in a few minutes.")
        log.info("a reader voted %s on a paper of %r", choice, found.subscription_id)
        undo = "/vote/undo?" + urlencode({"token": request.query_params["token"]})
        return self.web.page(200, "Noted", f"“{LABELS[choice]}” on {title} is noted.",
                             "Clicked by mistake?", form=(undo, "Undo"))

    async def undo(self, request: Request) -> Response:
        await request.body()
        try:
            found = self._token(request)
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        assert found.paper is not None
        try:
            removed = await run_in_threadpool(self.web.store.remove_vote, found.subscription_id, found.target,
                                              found.paper)
            title = await run_in_threadpool(self._title, found.paper)
        except StoreError as exc:
            log.error("a vote on %r could not be undone: %s", found.subscription_id, exc)
            return self.web.page(503, "Please try again", "Nothing was changed; please try again in a few minutes.")
        return self.web.page(200, "Vote removed" if removed else "No vote to remove",
                             f"There is no vote of yours on {title} now.")


def routes(web: Site) -> list[Route]:
    return Feedback(web).routes()
