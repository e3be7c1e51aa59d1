"""The manage page of `digestbot serve`: a reader's own subscriptions, and what they may change of them.

    GET  /manage?token=M          every subscription of this bot whose `email` (or `slack`) lists M's
                                  address: schedule, max_papers, paused or not, and forms to change them
    POST /manage?token=M          one form: `subscription`, `form` (the CSRF value) and `action`:
                                  "save" (max_papers and schedule), "pause", "resume" or "leave"

M is a "manage" token (tokens.py; it never expires); the unsubscribe page links to one made for the same
address. A reader changes only what is theirs: a subscription with several recipients (a lab's list) is
shared, so its schedule, size and pause are the admin's; such a reader may only leave it. Changes go
through the config's locked, validated editor (config/edit.py), as `digestbot subs set` does: a value the
validator refuses is shown next to its field with the validator's message, and the file stays as it was.
"Leave" is the one-click unsubscribe (`Web.leave`: the suppression first, then the config).

CSRF: every form carries FORM_FIELD, an HMAC of the page's token under the installation's secret; a POST
without the right one changes nothing. A page on another site knows neither the token nor that value
(and the CSP's form-action 'self' keeps this site's forms posting here). No script: plain HTML forms.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .. import config as config_module
from ..config import Config, SubscriptionConfig
from ..config.edit import editing
from ..errors import ConfigError, StoreError
from . import tokens
from .feedback import LABELS
from .site import Site

log = logging.getLogger(__name__)
FORM_FIELD = "form"
FORM_DOMAIN = b"digestbot-manage-form-v1\n"  # never the same bytes as a token's MAC
EDITABLE = ("max_papers", "schedule")
OWN_EDITABLE = ("query", "topics")  # also editable by the owner of a subscription made on the subscribe page
SCHEDULE_EXAMPLES = ("instant", "hourly", "daily 08:00", "weekly mon 08:00")
_FIELD_PROBLEM = re.compile(r": subscriptions\[(\d+)\]\.(\w+): (.*)", re.DOTALL)


def manage_path(secret: bytes, subscription_id: str, target: str) -> str:
    """The manage page's path and query for `target` (signed; the subscription it came from is
    shown first)."""
    return "/manage?" + urlencode({"token": tokens.sign(secret, "manage", subscription_id, target)})


def form_value(secret: bytes, token: str) -> str:
    return hmac.new(secret, FORM_DOMAIN + token.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class Entry:
    """One subscription as its reader sees it."""
    sub: SubscriptionConfig
    shared: bool  # more than one recipient: only leaving is the reader's
    own: bool = False  # made by this reader with their own query (`owner`): the query and topics are theirs too
    values: dict[str, str] = field(default_factory=dict)  # what the fields show (a refused value stays)
    errors: dict[str, str] = field(default_factory=dict)  # field -> the validator's message
    notice: str = ""
    ratings: list[Rating] = field(default_factory=list)  # the reader's votes on its papers, newest first


@dataclass(frozen=True)
class Rating:
    title: str
    vote: str  # "up" or "down"
    label: str  # how the digest's link said it


RATINGS_SHOWN = 10  # the newest; the page says how many more there are


def recipients(sub: SubscriptionConfig) -> int:
    return len(sub.email) + len(sub.slack) + bool(sub.slack_webhook or sub.slack_webhook_env)


class Manage:
    def __init__(self, web: Site):
        self.web = web

    def routes(self) -> list[Route]:
        return [Route("/manage", self.answering(self.show), methods=["GET"]),
                Route("/manage", self.answering(self.change), methods=["POST"])]

    def answering(self, route: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """`route`, with a page asking to try later when the database cannot be read just now."""
        async def answer(request: Request) -> Response:
            try:
                return await route(request)
            except StoreError as exc:
                log.error("the manage page could not read the database: %s", exc)
                return self.web.page(503, "Please try again", "Your digests cannot be shown just now. Nothing "
                                     "was changed; please try again in a few minutes.")
        return answer

    # --- routes -----------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            found = tokens.verify(self.web.secret, token, "manage")
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        return await run_in_threadpool(self.render, token, found, {}, 200)

    async def change(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        form = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
        token = request.query_params.get("token", "")
        try:
            found = tokens.verify(self.web.secret, token, "manage")
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        if not hmac.compare_digest(form.get(FORM_FIELD, ""), form_value(self.web.secret, token)):
            return self.web.page(403, "This form has expired", "Nothing was changed. Open the manage page again "
                                 "from its link and send the form from there.")
        subscription_id, action = form.get("subscription", ""), form.get("action", "")
        entry = self.entries(found.target).get(subscription_id)
        if entry is None:
            return self.web.page(404, "Not your subscription", "This address gets no digest of that name "
                                 "(any more). Nothing was changed.")
        if action == "leave":
            return await self.leave(found, subscription_id)
        if action not in ("save", "pause", "resume"):
            return self.web.page(400, "Unknown action", "Nothing was changed.")
        if entry.shared:
            return await run_in_threadpool(self.render, token, found, {subscription_id: Entry(
                entry.sub, True, notice="This digest is shared with others: only its admin can change it. "
                "Nothing was changed.")}, 403)
        changes, errors = self.wanted(entry.sub, action, form, own=entry.own)
        try:
            if not errors and changes:
                await run_in_threadpool(self.edit, subscription_id, changes)
        except FieldErrors as exc:
            errors = exc.errors
        except ConfigError as exc:
            log.warning("a reader's change of %r was not saved: %s", subscription_id, " ".join(exc.problems))
            errors = {"": "The change could not be saved just now; nothing was changed. Please try again later."}
        if errors:
            shown = {key: form.get(key, "") for key in (*EDITABLE, *OWN_EDITABLE)}
            refused = Entry(entry.sub, False, entry.own, values=shown, errors=errors)
            return await run_in_threadpool(self.render, token, found, {subscription_id: refused}, 400)
        notice = {"pause": "Paused: no digests until you resume.", "resume": "Resumed: the papers that "
                  "matched meanwhile come with the next digest."}.get(action, "Saved." if changes else "No change.")
        return await run_in_threadpool(self.render, token, found, {subscription_id: Entry(entry.sub, False,
                                                                                           notice=notice)}, 200)

    async def leave(self, found: tokens.Token, subscription_id: str) -> Response:
        try:
            await run_in_threadpool(self.web.leave, subscription_id, found.target)
        except StoreError as exc:
            log.error("a reader could not leave %r: %s", subscription_id, exc)
            return self.web.page(503, "Please try again", "The unsubscribe could not be recorded just now. "
                                 "Nothing was changed; please try again in a few minutes.")
        undo = tokens.sign(self.web.secret, "resubscribe", subscription_id, found.target)
        name = self.web.subscription_name(subscription_id)
        return self.web.page(200, "You have left", f"{found.target} will get no more digests of {name}.",
                             "Left by mistake? You can undo it within 48 hours:",
                             form=("/resubscribe?" + urlencode({"token": undo}), "Undo: subscribe again"))

    # --- what they do -----------------------------------------------------------------------------

    def entries(self, target: str) -> dict[str, Entry]:
        """The subscriptions listing `target` that it has not left (a suppression outlives the config)."""
        config = self.current_config()
        left = self.web.app.store.suppressions()
        return {sub.id: Entry(sub, recipients(sub) > 1, own=sub.owner == target and recipients(sub) == 1,
                              ratings=self.ratings(sub.id, target))
                for sub in config.subscriptions
                if target in (*sub.email, *sub.slack) and target not in left.get(sub.id, set())}

    def ratings(self, subscription_id: str, target: str) -> list[Rating]:
        """What `target` said of the papers of a subscription ("more like this", "not for me"), by title."""
        votes = self.web.app.store.votes(subscription_id, target)
        titles = {paper.key: paper.title for paper in self.web.app.store.papers_by_keys([v.paper for v in votes])}
        return [Rating(titles.get(v.paper, v.paper), v.vote, LABELS[v.vote]) for v in votes]

    def current_config(self) -> Config:
        """What the file says now (the admin and the daemon's readers edit it while `serve` runs); the
        config `serve` started with when the file cannot be read just now."""
        try:
            return config_module.load(self.web.config_path)
        except ConfigError:
            return self.web.config

    @staticmethod
    def wanted(sub: SubscriptionConfig, action: str, form: dict[str, str], *,
               own: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
        """The config values the form asks for, only those that differ (an unchanged value keeps how
        the file writes it), and the fields that are no value at all. `own`: the query and topics too
        (the config's validator judges them: a query that does not parse comes back with its caret)."""
        if action == "pause":
            return ({"paused": True} if not sub.paused else {}), {}
        if action == "resume":
            return ({"paused": None} if sub.paused else {}), {}  # None: the key goes (the default: not paused)
        changes: dict[str, Any] = {}
        errors: dict[str, str] = {}
        text = form.get("max_papers", "").strip()
        if not re.fullmatch(r"[0-9]{1,9}", text):
            errors["max_papers"] = "must be a whole number"
        elif int(text) != sub.max_papers:
            changes["max_papers"] = int(text)
        schedule = " ".join(form.get("schedule", "").split())
        if not schedule:
            errors["schedule"] = "give a schedule, e.g. " + ", ".join(SCHEDULE_EXAMPLES)
        elif schedule != sub.schedule:
            changes["schedule"] = schedule
        if own:
            query = " ".join(form.get("query", "").split())
            if query != sub.query:
                changes["query"] = query
            topics = [name for name in re.split(r"[,\s]+", form.get("topics", "")) if name]
            if topics != sub.topics:
                changes["topics"] = topics
        return changes, errors

    def edit(self, subscription_id: str, changes: dict[str, Any]) -> None:
        """Through the locked, validated editor; FieldErrors (file unchanged) when the validator refuses."""
        with editing(self.web.config_path) as editor:
            index = editor.find(subscription_id)
            editor.set_subscription(subscription_id, changes)
            try:
                editor.save()
            except ConfigError as exc:
                errors: dict[str, str] = {}
                for problem in exc.problems:
                    match = _FIELD_PROBLEM.search(problem)
                    if match and int(match.group(1)) == index and match.group(2) in changes:
                        errors.setdefault(match.group(2), match.group(3))
                if not errors:
                    raise
                raise FieldErrors(errors) from None
        log.info("a reader changed %s of %r", ", ".join(changes), subscription_id)

    def render(self, token: str, found: tokens.Token, overrides: dict[str, Entry], status: int) -> HTMLResponse:
        entries = self.entries(found.target)
        for key, override in overrides.items():  # what the form said, over what the file now says
            if key in entries:
                entries[key].values, entries[key].errors = override.values, override.errors
                entries[key].notice = override.notice  # (the ratings are the database's: kept)
        shown = sorted(entries.values(), key=lambda e: (e.sub.id != found.subscription_id, e.sub.name))
        for entry in shown:
            entry.values = entry.values or {"max_papers": str(entry.sub.max_papers), "schedule": entry.sub.schedule,
                                            "query": entry.sub.query, "topics": ", ".join(entry.sub.topics)}
        html = self.web.pages.get_template("manage.html.j2").render(
            target=found.target, entries=shown, action="/manage?" + urlencode({"token": token}),
            form_field=FORM_FIELD, form_value=form_value(self.web.secret, token), examples=SCHEDULE_EXAMPLES,
            ratings_shown=RATINGS_SHOWN, topics=sorted(self.current_config().topics))
        return HTMLResponse(html, status_code=status)


class FieldErrors(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)
        self.errors = errors
