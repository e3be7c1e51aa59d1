"""The subscribe page of `digestbot serve`: self-service subscribing, with double opt-in.

    GET  /                    the subscriptions the admin marks `public = true` (name, description, schedule,
                              a few recent papers each) and a form: `email`, `subscription` (a public id) and,
                              with `[web] allow_custom = true`, `query` (a query of one's own)
    POST /subscribe           records the request and mails a confirmation link; the answer is the same page
                              ("check your inbox") whether the address is new, subscribed already, over its
                              daily limit or asked a minute ago: the page tells nobody which addresses exist
    GET  /confirm?token=C     a page with one button (a GET changes nothing: link scanners fetch links)
    POST /confirm?token=C     applies the request: the address joins the public subscription's `email` (its
                              suppression, if it had left, is lifted), or a new subscription of its own is
                              made (`owner` = the address); idempotent

C is a "confirm" token (tokens.py) bound to the request's row in the store's confirmation table; it
expires after tokens.CONFIRM_TTL (48 h), and the requests are dropped from the table after that too.
The mail goes after the response (never in the request), through the email channel of the config
(channels/: SMTP with `[email]`, else the outbox), once: the request is claimed before sending and
marked sent after the server took it; requests claimed but never sent (a crash) go when serve starts.

Abuse: at most `[web] confirmations_per_address_per_day` requests per address (the store counts them),
`[web] subscribes_per_ip_per_hour` per client address (counted in this process's memory: each serve
process has its own count), a honeypot field people never see (`website`: a bot fills it in, gets the
same answer, and nothing is recorded or sent), and request bodies over 16 KB refused (app.Guard).

CSRF: the subscribe form is a signed double submit. GET / sets a random cookie (HttpOnly, SameSite=Strict,
Secure and `__Host-` when public_url is https) and the form carries an HMAC of it under the secret; a POST
needs both to agree, and is refused when the browser says it comes from another site (Sec-Fetch-Site).
The confirm button posts to its own link: the token in it is the secret another site cannot know.
Addresses and tokens are never logged.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from html import escape
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .. import channels
from .. import config as config_module
from ..app import build_matcher
from ..channels import Envelope
from ..config import Config, SubscriptionConfig
from ..config.edit import editing, subscription_table
from ..errors import ConfigError, DigestbotError, StoreError
from ..matching import QuerySyntaxError, parse_query
from ..models import Message, Paper
from ..render import safe_url, title_link
from ..store import ConfirmationRecord, utcnow
from . import tokens
from .manage import manage_path
from .site import Site

log = logging.getLogger(__name__)
FORM_FIELD = "form"
HONEYPOT = "website"
FORM_DOMAIN = b"digestbot-subscribe-form-v1\n"  # never the same bytes as a token's or the manage form's MAC
COOKIE, SECURE_COOKIE = "digestbot_form", "__Host-digestbot_form"  # __Host-: only with Secure (https)
MAX_ADDRESS, MAX_QUERY = 254, 500
SAMPLE_SIZE, SAMPLE_SECONDS, SAMPLE_POOL = 3, 300.0, 1000  # papers shown per subscription; cached; searched
SEND_LEASE = 300.0  # seconds a claimed confirmation mail is this process's to send
QUERY_HINT = 'Words, "phrases", AND, OR, NOT (or -word) and ( ), e.g. inference AND (llm OR "language model")'
_ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"]+@[^@\s<>()\[\]\\,;:\"]+\.[^@\s<>()\[\]\\,;:\".]+")
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{32,64}")


@dataclass
class Form:
    """What the subscribe form said, what is wrong with it (field -> message), and what it asks for."""
    email: str = ""
    subscription: str = ""
    query: str = ""
    errors: dict[str, str] | None = None


class Subscribe:
    def __init__(self, web: Site):
        self.web = web
        self.requests_by_ip: dict[str, deque[float]] = {}
        self.lock = threading.Lock()  # the per-IP counts and the caches are shared by the thread pool
        self.loaded: tuple[tuple[int, int], Config] | None = None
        self.samples: tuple[float, tuple[Any, ...], dict[str, list[dict[str, str]]]] | None = None

    def routes(self) -> list[Route]:
        return [Route("/", self.answering(self.show), methods=["GET"]),
                Route("/subscribe", self.answering(self.subscribe), methods=["POST"]),
                Route("/confirm", self.answering(self.confirm_page), methods=["GET"]),
                Route("/confirm", self.answering(self.confirm), methods=["POST"])]

    def answering(self, route: Any) -> Any:
        async def answer(request: Request) -> Response:
            try:
                response: Response = await route(request)
                return response
            except StoreError as exc:
                log.error("the subscribe page could not use the database: %s", exc)
                return self.web.page(503, "Please try again", "This cannot be done just now. Nothing was "
                                     "changed; please try again in a few minutes.")
        return answer

    # --- what the config says now ------------------------------------------------------------------

    def config(self) -> Config:
        """The file as it is now (the admin and readers edit it while serve runs), read again only when it
        changed; the config serve started with when it cannot be read just now."""
        try:
            stat = self.web.config_path.stat()
            key = (stat.st_mtime_ns, stat.st_size)
            with self.lock:
                if self.loaded is not None and self.loaded[0] == key:
                    return self.loaded[1]
            config = config_module.load(self.web.config_path)
        except (OSError, ConfigError):
            return self.web.config
        with self.lock:
            self.loaded = (key, config)
        return config

    @staticmethod
    def public(config: Config) -> list[SubscriptionConfig]:
        return [sub for sub in config.subscriptions if sub.public]

    def open_to_readers(self, config: Config) -> bool:
        """Whether there is anything to subscribe to, and a link to mail (public_url) to confirm it."""
        return bool(config.bot.public_url) and (bool(self.public(config)) or config.web.allow_custom)

    # --- GET / -------------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        cookie = self.cookie_of(request)
        fresh = cookie is None
        cookie = cookie or secrets.token_urlsafe(32)
        response = await run_in_threadpool(self.render, cookie, Form(), 200)
        if fresh:
            self.set_cookie(response, cookie)
        return response

    def render(self, cookie: str, form: Form, status: int) -> HTMLResponse:
        config = self.config()
        if not self.open_to_readers(config):
            return self.web.page(status, "Nothing to subscribe to here",
                                 "This bot offers no digest to subscribe to on this page. Ask its admin.")
        public = self.public(config)
        samples = self.sample(config, public)
        listed = [{"id": sub.id, "name": sub.name, "description": sub.description or "", "schedule": sub.schedule,
                   "timezone": sub.timezone or config.bot.timezone, "papers": samples.get(sub.id, [])}
                  for sub in public]
        chosen = form.subscription or (public[0].id if len(public) == 1 and not config.web.allow_custom else "")
        html = self.web.pages.get_template("subscribe.html.j2").render(
            subscriptions=listed, allow_custom=config.web.allow_custom, email=form.email, chosen=chosen,
            query=form.query, errors=form.errors or {}, form_field=FORM_FIELD, form_value=self.form_value(cookie),
            honeypot=HONEYPOT, query_hint=QUERY_HINT, per_day=config.web.confirmations_per_address_per_day)
        return HTMLResponse(html, status_code=status)

    def sample(self, config: Config, public: list[SubscriptionConfig]) -> dict[str, list[dict[str, str]]]:
        """Subscription id -> its SAMPLE_SIZE newest matches among the newest stored papers: what it would
        send. One matcher for all public subscriptions, cached SAMPLE_SECONDS (GET / stays cheap)."""
        key = tuple((sub.id, sub.query, tuple(sub.topics)) for sub in public) + tuple(
            (name, topic.query, tuple(topic.like)) for name, topic in sorted(config.topics.items()))
        with self.lock:
            if self.samples is not None and self.samples[1] == key and time.monotonic() < self.samples[0]:
                return self.samples[2]
        found: dict[str, list[Paper]] = {sub.id: [] for sub in public}
        if public:
            store = self.web.store
            matcher = build_matcher(replace(config, subscriptions=public), store)
            papers = store.papers(limit=SAMPLE_POOL)  # newest first
            place = {id(paper): i for i, paper in enumerate(papers)}
            for match in sorted(matcher.match(papers), key=lambda m: place.get(id(m.paper), len(papers))):
                shown = found.setdefault(match.subscription_id, [])
                if len(shown) < SAMPLE_SIZE and match.paper not in shown:
                    shown.append(match.paper)
        result = {sub_id: [{"title": p.title, "link": safe_url(title_link(p))} for p in papers]
                  for sub_id, papers in found.items()}
        with self.lock:
            self.samples = (time.monotonic() + SAMPLE_SECONDS, key, result)
        return result

    # --- CSRF ----------------------------------------------------------------------------------------

    def cookie_name(self) -> str:
        return SECURE_COOKIE if self.secure() else COOKIE

    def secure(self) -> bool:
        return (self.web.config.bot.public_url or "").lower().startswith("https://")

    def cookie_of(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name(), "")
        return value if _COOKIE_VALUE.fullmatch(value) else None

    def set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(self.cookie_name(), value, httponly=True, samesite="strict", secure=self.secure(),
                            path="/")

    def form_value(self, cookie: str) -> str:
        return hmac.new(self.web.secret, FORM_DOMAIN + cookie.encode("ascii"), hashlib.sha256).hexdigest()

    def forged(self, request: Request, form: dict[str, str]) -> bool:
        """True unless the cookie and the form's value agree, and the browser does not say another site
        sent the form."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        cookie = self.cookie_of(request)
        return cookie is None or not hmac.compare_digest(form.get(FORM_FIELD, ""), self.form_value(cookie))

    def refused(self) -> Response:
        return self.web.page(403, "This form has expired", "Nothing was sent. Open the subscribe page again and "
                             "send the form from there (with cookies allowed for this site).")

    # --- POST /subscribe -----------------------------------------------------------------------------

    async def subscribe(self, request: Request) -> Response:
        body = (await request.body()).decode("utf-8", "replace")
        fields = {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}
        if self.forged(request, fields):
            return self.refused()
        config = await run_in_threadpool(self.config)
        if not self.open_to_readers(config):
            return self.web.page(404, "Nothing to subscribe to here", "This bot offers no digest to subscribe to "
                                 "on this page. Nothing was recorded.")
        if not self.allowed(request.client.host if request.client else "", config.web.subscribes_per_ip_per_hour):
            return self.web.page(429, "Too many requests", "Too many subscribe requests came from your network "
                                 "in the last hour. Nothing was recorded; please try again later.")
        if fields.get(HONEYPOT, ""):  # a person never sees that field; the same answer, nothing done
            return self.inbox()
        form = self.checked(fields, config)
        if form.errors:
            cookie = self.cookie_of(request) or ""
            return await run_in_threadpool(self.render, cookie, form, 400)
        record = await run_in_threadpool(
            self.web.store.request_confirmation, form.subscription, form.query, form.email, utcnow(),
            config.web.confirmations_per_address_per_day)
        if record is None:  # over the address's limit, or asked a moment ago: the same answer
            return self.inbox()
        return self.inbox(BackgroundTask(self.send, ids=[record.id]))

    def inbox(self, then: BackgroundTask | None = None) -> Response:
        """The one answer to every accepted form: it says nothing of the address."""
        response = self.web.page(200, "Check your inbox", "If that address can get this digest, a mail with a "
                                 "confirmation link is on its way to it. Nothing happens until you follow the link; "
                                 f"it works for {int(tokens.CONFIRM_TTL.total_seconds() // 3600)} hours.",
                                 "No mail? Look in the spam folder, or send the form again later.")
        response.background = then
        return response

    def allowed(self, client: str, per_hour: int) -> bool:
        """Count a request from `client` (sliding window of an hour, in this process's memory)."""
        now = time.monotonic()
        with self.lock:
            if len(self.requests_by_ip) > 10_000:  # forget clients that went quiet: memory stays bounded
                for key in [k for k, times in self.requests_by_ip.items() if not times or times[-1] < now - 3600]:
                    del self.requests_by_ip[key]
            times = self.requests_by_ip.setdefault(client, deque())
            while times and times[0] < now - 3600:
                times.popleft()
            if len(times) >= per_hour:
                return False
            times.append(now)
            return True

    def checked(self, fields: dict[str, str], config: Config) -> Form:
        errors: dict[str, str] = {}
        email = fields.get("email", "").strip()
        subscription = fields.get("subscription", "").strip()
        query = " ".join(fields.get("query", "").split())
        form = Form(email=email[:MAX_ADDRESS + 10], subscription=subscription, query=query[:MAX_QUERY + 10])
        if len(email) > MAX_ADDRESS or not _ADDRESS.fullmatch(email) or parseaddr(email)[1] != email:
            errors["email"] = "Give one email address, like name@example.org."
        if subscription:
            form.query = ""
            if subscription not in {sub.id for sub in self.public(config)}:
                errors["subscription"] = "That digest is not offered here (any more): choose one of the list."
        elif not config.web.allow_custom:
            errors["subscription"] = "Choose a digest of the list."
        elif not query:
            errors["query"] = "Choose a digest of the list, or write a query of your own."
        elif len(query) > MAX_QUERY:
            errors["query"] = f"A query of at most {MAX_QUERY} characters, please."
        else:
            try:
                parse_query(query)
            except QuerySyntaxError as exc:
                errors["query"] = str(exc)
        form.errors = errors
        return form

    # --- the confirmation mail -----------------------------------------------------------------------

    def resume_unsent(self) -> None:
        """At start: drop requests whose links have expired; send the mails of those recorded but never
        sent (the process stopped in between)."""
        try:
            since = utcnow() - tokens.CONFIRM_TTL
            self.web.store.drop_confirmations(since)
            self.send(since=since)
        except DigestbotError as exc:
            log.error("unsent confirmation mails could not be looked at: %s", exc)

    def send(self, *, ids: list[int] | None = None, since: datetime | None = None) -> None:
        """Claim the requests (so no other sender takes them), send each mail, then mark it sent; a
        failure is logged (never the link) and the request waits for the next start."""
        store = self.web.store
        try:
            claimed = store.claim_confirmations(utcnow(), timedelta(seconds=SEND_LEASE), ids=ids, since=since)
            if not claimed:
                return
            config = self.config()
            with channels.build(config, "email") as channel:
                for record in claimed:
                    self.send_one(channel, config, record)
            store.drop_confirmations(utcnow() - tokens.CONFIRM_TTL)
        except DigestbotError as exc:
            log.error("confirmation mails could not be sent: %s", exc)

    def send_one(self, channel: channels.Channel, config: Config, record: ConfirmationRecord) -> None:
        store = self.web.store
        try:
            message, envelope = self.mail(config, record)
            channel.send(message, envelope)
        except DigestbotError as exc:
            log.error("the confirmation mail of request %d was not sent: %s", record.id, exc)
            store.confirmation_sent(record.id, utcnow(), sent=False)
            return
        store.confirmation_sent(record.id, utcnow())
        log.info("the confirmation mail of request %d was sent", record.id)

    def mail(self, config: Config, record: ConfirmationRecord) -> tuple[Message, Envelope]:
        token = tokens.sign(self.web.secret, "confirm", record.subscription_id, record.target,
                            confirmation=record.id)
        link = (config.bot.public_url or "").rstrip("/") + "/confirm?" + urlencode({"token": token})
        what = self.described(config, record)
        subject = f"Confirm your subscription to {what}"
        hours = int(tokens.CONFIRM_TTL.total_seconds() // 3600)
        text = (f"Someone, probably you, asked for {record.target} to get the paper digest {what}.\n\n"
                f"To confirm, open this link and press the button:\n{link}\n\n"
                f"The link works for {hours} hours. If you did not ask for this, ignore this mail: "
                f"nothing is sent to you without it.\n")
        html = (f"<!DOCTYPE html><html><body style=\"font-family: sans-serif; font-size: 14px\">"
                f"<p>Someone, probably you, asked for {escape(record.target)} to get the paper digest "
                f"<b>{escape(what)}</b>.</p><p><a href=\"{escape(link)}\">Confirm your subscription</a> "
                f"(open the link and press the button).</p><p>The link works for {hours} hours. If you did not "
                f"ask for this, ignore this mail: nothing is sent to you without it.</p></body></html>")
        domain = (parseaddr(config.email.sender)[1].rpartition("@")[2] if config.email else "") or "digestbot.localhost"
        envelope = Envelope(target=record.target, subscription=what, subscription_id=record.subscription_id,
                            message_id=f"<confirm-{record.id}.{self.web.store.installation}@{domain}>",
                            list_id=f"Subscription confirmations <confirm.{domain}>")
        return Message(subject=subject, text=text, html=html), envelope

    def described(self, config: Config, record: ConfirmationRecord) -> str:
        if not record.subscription_id:
            return f"of your own query '{record.query}'"
        for sub in config.subscriptions:
            if sub.id == record.subscription_id:
                return sub.name
        return record.subscription_id

    # --- GET and POST /confirm -----------------------------------------------------------------------

    def request_of(self, request: Request) -> tuple[str, ConfirmationRecord]:
        """The token and its request; BadToken when either does not hold."""
        token = request.query_params.get("token", "")
        found = tokens.verify(self.web.secret, token, "confirm")
        record = None if found.confirmation is None else self.web.store.confirmation(found.confirmation)
        if record is None or (record.subscription_id, record.target) != (found.subscription_id, found.target):
            raise tokens.BadToken("this request is no longer kept; ask for a new link on the subscribe page")
        return token, record

    async def confirm_page(self, request: Request) -> Response:
        try:
            token, record = await run_in_threadpool(self.request_of, request)
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        config = await run_in_threadpool(self.config)
        what = self.described(config, record)
        return self.web.page(200, "Confirm your subscription", f"{record.target} will get the paper digest {what}.",
                             "Press the button to confirm.", form=("/confirm?" + urlencode({"token": token}),
                                                                    "Confirm"))

    async def confirm(self, request: Request) -> Response:
        await request.body()  # read (the guard caps it); the token decides
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return self.web.page(403, "This form has expired", "Nothing was changed. Open the link of the mail "
                                 "again and press the button there.")
        try:
            _, record = await run_in_threadpool(self.request_of, request)
        except tokens.BadToken as exc:
            return self.web.bad_link(exc)
        try:
            subscription_id, name = await run_in_threadpool(self.apply, record)
        except Gone as exc:
            return self.web.page(410, "No longer offered", str(exc), "Nothing was changed.")
        except ConfigError as exc:
            log.warning("a confirmed request could not be applied: %s", " ".join(exc.problems))
            return self.web.page(503, "Please try again", "Your subscription could not be saved just now. "
                                 "Nothing was changed; please follow the link again in a few minutes.")
        return self.web.page(200, "You are subscribed", f"{record.target} gets the digests of {name}, from the "
                             "next new papers on.", link=(manage_path(self.web.secret, subscription_id,
                                                                      record.target),
                                                          "Manage your digests: pause, change, or leave"))

    def apply(self, record: ConfirmationRecord) -> tuple[str, str]:
        """The address into the config (idempotent), its suppression lifted, the request confirmed; the
        subscription's id and name. Gone when what was asked for is no longer offered."""
        config = self.config()
        if record.subscription_id:
            sub = next((s for s in config.subscriptions if s.id == record.subscription_id), None)
            if sub is None or (not sub.public and record.target not in sub.email):
                raise Gone("That digest is no longer offered here.")
            if record.confirmed_at is None or record.target not in sub.email:
                self.web.come_back(sub.id, record.target)  # the address in `email`, and unsuppressed
            subscription_id, name = sub.id, sub.name
        else:
            name = own_name(record.query, record.target)
            mine = next((s for s in config.subscriptions if s.id == own_id(name)), None)
            if mine is None and not config.web.allow_custom:
                raise Gone("Queries of one's own are no longer taken here.")
            subscription_id = self.create_own(name, record)
            self.web.store.unsuppress(subscription_id, record.target)
        self.web.store.confirm(record.id, utcnow())
        log.info("a subscribe request was confirmed for %r", subscription_id)
        return subscription_id, name

    def create_own(self, name: str, record: ConfirmationRecord) -> str:
        """The reader's own subscription, made through the config's locked, validated editor (so the
        command line's and the daemon's edits at the same moment lose nothing); kept when it exists."""
        with editing(self.web.config_path) as editor:
            try:
                editor.find(name)
            except ConfigError:
                editor.add_subscription(name, {"query": record.query, "email": [record.target],
                                               "owner": record.target})
                editor.save()
            else:
                table = subscription_table(editor, name)
                if record.target not in [str(v) for v in table.get("email", [])]:
                    editor.set_subscription(name, {"email": [*table.get("email", []), record.target]})
                    editor.save()
        return own_id(name)


class Gone(Exception):
    pass


def own_name(query: str, target: str) -> str:
    """The name of a reader's own subscription: the query, shortened, and a hash of query and address
    (two readers with one query get one each; asking twice gives the same one)."""
    digest = hashlib.sha256(f"{target}\n{query}".encode()).hexdigest()[:6]
    shown = query if len(query) <= 40 else query[:39].rstrip() + "…"
    return f"Own: {shown} ({digest})"


def own_id(name: str) -> str:
    return SubscriptionConfig(name=name).id
