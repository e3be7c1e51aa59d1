"""`digestbot serve`: the web process answering readers' links. A Starlette app over `app.App`.

    GET  /unsubscribe?token=T     a page with one button; a GET changes nothing (link scanners GET too)
    POST /unsubscribe?token=T     leave at once (RFC 8058 one-click: what mail clients POST, with the body
                                  `List-Unsubscribe=One-Click`; the page's button posts the same):
                                  the suppression is recorded (queued digests cancelled), then the address
                                  is removed from the subscription in the config file. Idempotent.
    POST /resubscribe?token=U     the "undo" button of the page saying it is done (U expires after 48 h)
    /vote, /vote/undo             readers' feedback on papers (feedback.py)
    GET  /digest?token=D          a reader's list of all the papers of one digest (digest_list.py)
    GET  /unsubscribe             (the digests' footer link) how to leave
    GET|POST /manage?token=M      a reader's subscriptions: pause, resume, size, schedule, leave (manage.py)
    POST /slack/actions           the vote buttons of Slack digests, signed by Slack (slack_actions.py)
    GET  /, POST /subscribe,      the subscribe page: the public subscriptions (and, with [web] allow_custom,
    GET|POST /confirm?token=C     a query of one's own), double opt-in by a mailed link (subscribe.py)
    GET  /healthz                 200 {"database": "ok", "last_successful_poll_age_s": ...,
                                  "daemon_heartbeat_age_s": ..., "daemons": [{"host", "pid", "age_s"}]}
                                  (200 even with no daemon: monitors judge the ages), 503 when the
                                  database cannot be read
    GET  /metrics                 Prometheus metrics, read from the database at each scrape (metrics.py)

Every response carries a strict Content-Security-Policy (no script at all), X-Frame-Options DENY and
Referrer-Policy no-referrer; a request body over MAX_BODY bytes is refused with 413 (Slack's click
payloads, which repeat the clicked message, may have up to slack_actions.MAX_BODY). Tokens are never
logged: the access log is off (a token is in the query string) and this module logs no URL.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .. import bundled
from ..app import App
from ..config import Config
from ..config.edit import editing, subscription_table
from ..errors import ConfigError, StoreError
from ..store import Store
from . import digest_list, feedback, metrics, slack_actions, tokens
from .manage import Manage, manage_path
from .subscribe import Subscribe

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024  # a one-click POST is 26 bytes; nothing here takes more than a small form
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                 b"base-uri 'none'; frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),  # pages name a reader's address; no shared cache keeps them
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """ASGI middleware: the security headers on every response, and no request body over MAX_BODY
    (refused from its Content-Length at once, or as soon as a chunked body passes the limit); `larger`:
    the paths allowed more, and how much."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY, larger: dict[str, int] | None = None):
        self.app, self.max_body, self.larger = app, max_body, dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((n, v) for n, v in SECURITY_HEADERS if n not in names)]
            await send(message)

        limit = self.larger.get(scope.get("path", ""), self.max_body)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await too_large(scope, receive, send_guarded)
            return
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, receive_limited, send_guarded)
        except BodyTooLarge:
            await too_large(scope, receive, send_guarded)


class BodyTooLarge(Exception):
    pass


async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = HTMLResponse("<!doctype html><title>Too large</title><p>Request too large.</p>", status_code=413,
                            headers={"connection": "close"})
    await response(scope, receive, send)


class Web:
    """The routes, over one installation (config file, database, signing secret)."""

    def __init__(self, config_path: str | Path):
        self.config_path = Path(config_path)
        self.app = App.from_config(self.config_path, open_database=False, create=False)  # no matcher needed here
        secret = self.app.config.link_secret()
        if not secret:
            raise ConfigError(f"{self.app.config.path}: `digestbot serve` needs [web] secret_env: the environment "
                              f"variable holding the secret that signs readers' links")
        self.secret = secret
        self.app.store  # noqa: B018  (opened now: a missing database fails at start, not at the first reader)
        folder = bundled.templates_folder() / "web"
        self.pages = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(default=True),
                                 trim_blocks=True, lstrip_blocks=True)

    @property
    def config(self) -> Config:
        return self.app.config

    @property
    def store(self) -> Store:
        return self.app.store

    def page(self, status: int, title: str, *lines: str, form: tuple[str, str] | None = None,
             link: tuple[str, str] | None = None) -> HTMLResponse:
        """`form`: (action URL, button label) of the page's one POST button; `link`: (URL, text) under it."""
        html = self.pages.get_template("page.html.j2").render(title=title, lines=lines, form=form, link=link)
        return HTMLResponse(html, status_code=status)

    def bad_link(self, error: tokens.BadToken) -> HTMLResponse:
        return self.page(400, "This link does not work", str(error).capitalize() + ".",
                         "Nothing was changed. Use the Unsubscribe link of a recent digest, or reply to it.")

    def subscription_name(self, subscription_id: str) -> str:
        for sub in self.config.subscriptions:
            if sub.id == subscription_id:
                return sub.name
        return subscription_id

    # --- routes -----------------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is None:
            return self.page(200, "Leaving a digest",
                             "To stop getting a digest, use your mail client's Unsubscribe button on it: it "
                             "carries a link made for your address alone.",
                             "Or reply to the digest and ask the bot's admin.")
        try:
            found = tokens.verify(self.secret, token, "unsubscribe")
        except tokens.BadToken as exc:
            return self.bad_link(exc)
        action = "/unsubscribe?" + urlencode({"token": token})
        return self.page(200, f"Leave {self.subscription_name(found.subscription_id)}?",
                         f"{found.target} will get no more digests of "
                         f"{self.subscription_name(found.subscription_id)}.",
                         form=(action, "Unsubscribe"),
                         link=(manage_path(self.secret, found.subscription_id, found.target),
                               "Or pause it, or change how often and how much you get"))

    async def unsubscribe(self, request: Request) -> Response:
        await request.body()  # read (the guard caps it); its content does not matter: the token decides
        try:
            found = tokens.verify(self.secret, request.query_params.get("token", ""), "unsubscribe")
        except tokens.BadToken as exc:
            return self.bad_link(exc)
        try:
            await run_in_threadpool(self.leave, found.subscription_id, found.target)
        except StoreError as exc:
            log.error("a reader could not leave %r: %s", found.subscription_id, exc)
            return self.page(503, "Please try again", "The unsubscribe could not be recorded just now. "
                             "Nothing was changed; please try again in a few minutes.")
        undo = tokens.sign(self.secret, "resubscribe", found.subscription_id, found.target)
        name = self.subscription_name(found.subscription_id)
        return self.page(200, "You have left", f"{found.target} will get no more digests of {name}.",
                         "Left by mistake? You can undo it within 48 hours:",
                         form=("/resubscribe?" + urlencode({"token": undo}), "Undo: subscribe again"))

    async def resubscribe(self, request: Request) -> Response:
        await request.body()
        try:
            found = tokens.verify(self.secret, request.query_params.get("token", ""), "resubscribe")
        except tokens.BadToken as exc:
            return self.bad_link(exc)
        try:
            await run_in_threadpool(self.come_back, found.subscription_id, found.target)
        except StoreError as exc:
            log.error("a reader could not come back to %r: %s", found.subscription_id, exc)
            return self.page(503, "Please try again", "Nothing was changed; please try again in a few minutes.")
        return self.page(200, "Welcome back", f"{found.target} gets the digests of "
                         f"{self.subscription_name(found.subscription_id)} again, from the next new papers on.")

    async def healthz(self, request: Request) -> Response:
        """200 whenever the database answers, even with no daemon running: the ages say how fresh things
        are and monitors decide what is too old (a beat comes every daemon.HEARTBEAT_SECONDS)."""
        store = self.app.store
        try:
            last = await run_in_threadpool(store.last_successful_poll)
            beats = await run_in_threadpool(store.heartbeats)
        except StoreError as exc:
            return JSONResponse({"database": "unreachable", "error": str(exc)}, status_code=503)
        at = datetime.now(UTC)

        def age(then: datetime) -> float:
            return round((at - then).total_seconds(), 1)

        return JSONResponse({
            "database": "ok", "last_successful_poll_age_s": None if last is None else age(last),
            "daemon_heartbeat_age_s": age(beats[0].beat_at) if beats else None,
            "daemons": [{"host": b.host, "pid": b.pid, "age_s": age(b.beat_at)} for b in beats]})

    # --- what the routes do -----------------------------------------------------------------------

    def leave(self, subscription_id: str, target: str) -> None:
        """Suppress first (from this moment nothing more is sent or queued, whatever the config says),
        then take the address out of the config, where the admin sees it."""
        cancelled = self.app.store.suppress(subscription_id, target, datetime.now(UTC))
        changed = self.edit_recipients(subscription_id, target, present=False)
        log.info("a reader left %r (%d queued digests cancelled; config %s)", subscription_id, cancelled,
                 "edited" if changed else "unchanged")

    def come_back(self, subscription_id: str, target: str) -> None:
        self.edit_recipients(subscription_id, target, present=True)
        self.app.store.unsuppress(subscription_id, target)
        log.info("a reader came back to %r", subscription_id)

    def edit_recipients(self, subscription_id: str, target: str, *, present: bool) -> bool:
        """Add `target` to the subscription's recipients in the config file, or remove it (a Slack
        channel from `slack`, anything else from `email`), through the locked, validated editor.
        False when there was nothing to do, or the edit would make the config invalid (e.g. the last
        recipient of a subscription: the suppression alone then keeps the mail away). A subscription
        its `owner` made on the subscribe page goes from the config with its owner, its last recipient:
        it was theirs alone, and a subscription without a recipient is no valid one."""
        key = "slack" if target.startswith("#") else "email"
        try:
            with editing(self.config_path) as editor:
                try:
                    table = subscription_table(editor, subscription_id)
                except ConfigError:
                    return False  # no longer configured: the suppression is all there is to do
                listed = [str(value) for value in table.get(key, [])]
                if (target in listed) == present:
                    return False
                wanted = [*listed, target] if present else [value for value in listed if value != target]
                others = [k for k in ("email", "slack", "slack_webhook", "slack_webhook_env")
                          if k != key and table.get(k)]
                if not present and not wanted and not others and str(table.get("owner", "")) == target:
                    editor.remove_subscription(subscription_id)
                    log.info("the owner of %r left: the subscription was removed from the config", subscription_id)
                else:
                    editor.set_subscription(subscription_id, {key: wanted})
                editor.save()
                return True
        except ConfigError as exc:
            log.warning("the config was left as it is (%s): %s", subscription_id, " ".join(exc.problems))
            return False


def create_app(config_path: str | Path) -> Starlette:
    web = Web(config_path)
    subscribe = Subscribe(web)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Confirmation mails recorded but not sent (a crash between the two): sent now, without
        # holding up the start (the SMTP server may be slow).
        resumed = asyncio.create_task(run_in_threadpool(subscribe.resume_unsent))
        yield
        await resumed

    routes = [Route("/unsubscribe", web.unsubscribe_page, methods=["GET"]),
              Route("/unsubscribe", web.unsubscribe, methods=["POST"]),
              Route("/resubscribe", web.resubscribe, methods=["POST"]),
              Route("/healthz", web.healthz, methods=["GET"]),
              *feedback.routes(web),
              *digest_list.routes(web),
              *metrics.routes(web),
              *Manage(web).routes(),
              *slack_actions.routes(web),
              *subscribe.routes()]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.add_middleware(Guard, larger={slack_actions.PATH: slack_actions.MAX_BODY})
    starlette.state.web = web
    return starlette


def serve(config_path: str | Path, *, log_level: str = "info") -> None:
    """Run the app on `[web] listen` until stopped (SIGINT/SIGTERM)."""
    import uvicorn

    app = create_app(config_path)
    web: Web = app.state.web
    listen = web.config.web
    log.info("serving readers' links on http://%s (public as %s)", listen.listen, web.config.bot.public_url)
    try:
        # log_config=None: uvicorn's lines go through the handler the command line set up, so they carry
        # the same ISO times (and are JSON with --log-format json) as digestbot's own.
        uvicorn.run(app, host=listen.host, port=listen.port, access_log=False, log_level=log_level,
                    log_config=None, server_header=False, proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    finally:
        web.app.close()

