"""Real servers on 127.0.0.1 for tests: the code under test talks to them with its real clients.

    HttpServer    a routing table of canned responses (+ Hugging Face `daily_papers` paging)
    SlackServer   the Slack Web API (`chat.postMessage`, `auth.test`), incoming webhooks and the
                  `response_url`s of interactive messages
    SmtpServer    aiosmtpd, storing every message; per-recipient faults; stop()/start() on one port

Each is a context manager; tests/conftest.py exposes them as fixtures. Fault injection is explicit
state on the server object, so a test reads like the incident it reproduces.
"""
from __future__ import annotations

import itertools
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiosmtpd.controller import Controller

Body = bytes | str | list | dict
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,}")  # Slack's public, private and direct channel ids
Reply = tuple[int, dict[str, str], Body]


@dataclass
class Request:
    """One request as the server saw it; unpacks as (path, query, headers)."""

    path: str
    query: dict[str, str]
    headers: HTTPMessage  # case-insensitive: headers["user-agent"] == headers["User-Agent"]
    method: str = "GET"
    body: bytes = b""

    def __iter__(self) -> Iterator[Any]:
        return iter((self.path, self.query, self.headers))

    def json(self) -> Any:
        return json.loads(self.body or b"null")


def encode(body: Body, headers: dict[str, str]) -> bytes:
    """Lists and dicts become JSON (with its content type unless the test set one)."""
    if isinstance(body, (list, dict)):
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return json.dumps(body).encode()
    headers.setdefault("Content-Type", "text/plain; charset=utf-8")
    return body.encode() if isinstance(body, str) else body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers: clients reuse connections

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)),
                          self.headers, self.command, self.rfile.read(length) if length else b"")
        reply = self.server.owner._dispatch(request)  # type: ignore[attr-defined]
        if reply is None:  # fault injection: the request was read, the answer never comes
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, body = reply
        headers = dict(headers)
        data = encode(body, headers)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


class _LoopbackHttp:
    """A ThreadingHTTPServer on a free port, in a daemon thread; subclasses answer `_handle`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> _LoopbackHttp:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits for it, once per test.
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _dispatch(self, request: Request) -> Reply | None:
        with self._lock:  # handlers run in threads; tests read the records from the main thread
            self.requests.append(request)
        return self._handle(request)  # outside the lock: a slow route must not stall the others

    def _handle(self, request: Request) -> Reply | None:
        raise NotImplementedError


@dataclass
class _Route:
    body: Body | Callable[[Request], Reply | None]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class HttpServer(_LoopbackHttp):
    """Canned responses by path: `server.route("/feed", "<rss/>", headers={...})`; 404 otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, _Route] = {}
        self.today: date | None = None  # `daily_papers` rejects later dates; None: today in UTC

    def route(self, path: str, body: Body | Callable[[Request], Reply | None], status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        """A callable gets the Request (path, query, headers; also .method, .body) and returns
        (status, headers, body), or None to close the connection without an answer."""
        self.routes[path] = _Route(body, status, dict(headers or {}))

    def _handle(self, request: Request) -> Reply | None:
        route = self.routes.get(request.path)
        if route is None:
            return 404, {}, {"error": "Not Found"}
        if callable(route.body):
            return route.body(request)
        return route.status, dict(route.headers), route.body

    def daily_papers(self, pages_by_date: dict[str, list[dict]], path: str = "/api/daily_papers") -> None:
        """Serve Hugging Face's `daily_papers` with its real paging: `?date=YYYY-MM-DD&p=0&limit=50`."""
        self.route(path, lambda request: _daily_papers(request, pages_by_date, self.today))


def _daily_papers(request: Request, by_date: dict[str, list[dict]], today: date | None) -> Reply:
    q = request.query
    try:
        limit, page = int(q.get("limit", 50)), int(q.get("p", 0))
    except ValueError:
        return 400, {}, {"error": "limit and p must be integers"}
    if not 1 <= limit <= 100 or page < 0:
        return 400, {}, {"error": f"limit must be 1..100 and p >= 0 (got limit={limit}, p={page})"}
    day = q.get("date") or max(by_date, default=(today or datetime.now(UTC).date()).isoformat())
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        return 400, {}, {"error": f"Invalid date: {day}"}
    if len(day) != 10 or parsed > (today or datetime.now(UTC).date()):
        return 400, {}, {"error": f"Invalid date: {day} (must be YYYY-MM-DD, not in the future)"}
    items = by_date.get(day, [])
    return 200, {}, items[page * limit:(page + 1) * limit]


def in_order(*replies: Reply) -> Callable[[Request], Reply]:
    """A route answering each reply once, in order, then repeating the last (e.g. 429, 429, 200)."""
    it = itertools.chain(replies, itertools.repeat(replies[-1]))
    return lambda request: next(it)


class SlackServer(_LoopbackHttp):
    """The Slack Web API at `base_url` (point `WebClient(base_url=...)` here) plus incoming webhooks.

    Faults: `rate_limit(n)` (429 + Retry-After), `drop(n)` (read the request, close the connection:
    the post may have landed, the client cannot know), `missing_channels`, `dead_webhooks`.
    """

    def __init__(self, token: str = "xoxb-test") -> None:
        super().__init__()
        self.token = token
        self.posts: list[dict] = []  # accepted chat.postMessage calls only
        self.webhooks: list[dict] = []  # accepted webhook payloads: {"id", "payload", "text", "blocks"}
        self.responses: list[dict] = []  # JSON bodies POSTed to response_url()s, with their "id"
        self.missing_channels: set[str] = set()
        self.dead_webhooks: set[str] = set()
        self._limited, self._retry_after, self._drops = 0, 1, 0
        self._ts = itertools.count(1)
        self._channel_ids: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return f"{self.url}/api/"

    def webhook_url(self, hook_id: str = "T0000/B0000/XXXXXXXX") -> str:
        return f"{self.url}/webhook/{hook_id}"

    def response_url(self, response_id: str = "T0001/1234/abcdef") -> str:
        """Where an interactive message's click may be answered (Slack's https://hooks.slack.com/actions/...)."""
        return f"{self.url}/actions/{response_id}"

    def rate_limit(self, n: int = 1, retry_after: int = 1) -> None:
        self._limited, self._retry_after = n, retry_after

    def drop(self, n: int = 1) -> None:
        self._drops = n

    def _handle(self, request: Request) -> Reply | None:
        with self._lock:  # fault counters and records are shared by the handler threads
            return self._answer(request)

    def _answer(self, request: Request) -> Reply | None:
        if self._drops:
            self._drops -= 1
            return None
        if self._limited:
            self._limited -= 1
            return 429, {"Retry-After": str(self._retry_after)}, {"ok": False, "error": "ratelimited"}
        if request.path.startswith("/webhook/"):
            return self._webhook(request.path[len("/webhook/"):], request)
        if request.path.startswith("/actions/"):
            return self._response(request.path[len("/actions/"):], request)
        if not request.path.startswith("/api/"):
            return 404, {}, "Not Found"
        params = _slack_params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if token != self.token:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        method = request.path[len("/api/"):]
        if method == "auth.test":
            return 200, {}, {"ok": True, "url": "https://digestbot-test.slack.com/", "team": "Test",
                             "user": "digestbot", "team_id": "T0001", "user_id": "U0001", "bot_id": "B0001"}
        if method == "chat.postMessage":
            return 200, {}, self._post(params)
        return 200, {}, {"ok": False, "error": "unknown_method"}

    def _post(self, params: dict[str, Any]) -> dict:
        channel, text, blocks = params.get("channel"), params.get("text"), params.get("blocks")
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > 50
                                   or not all(isinstance(b, dict) and "type" in b for b in blocks)):
            return {"ok": False, "error": "invalid_blocks"}
        if text and len(text) > 40000:
            return {"ok": False, "error": "msg_too_long"}
        n = next(self._ts)
        ts = f"{1700000000 + n}.{n:06d}"  # Slack ts strings: unique and increasing within a channel
        # A channel id stays itself; a name gets an id of its own, as Slack's answer gives it
        channel_id = channel if CHANNEL_ID.fullmatch(channel) else \
            self._channel_ids.setdefault(channel, f"C{len(self._channel_ids) + 1:08d}")
        self.posts.append({"channel": channel, "channel_id": channel_id, "text": text, "blocks": blocks,
                           "thread_ts": params.get("thread_ts"), "ts": ts, "params": params})
        message = {"type": "message", "user": "U0001", "bot_id": "B0001", "text": text or "", "ts": ts}
        if blocks:
            message["blocks"] = blocks
        return {"ok": True, "channel": channel_id, "ts": ts, "message": message}

    def _webhook(self, hook_id: str, request: Request) -> Reply:
        if hook_id in self.dead_webhooks:
            return 404, {}, "no_service"
        try:
            payload = request.json()
        except ValueError:
            return 400, {}, "invalid_payload"
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return 400, {}, "no_text"
        self.webhooks.append({"id": hook_id, "payload": payload, "text": payload.get("text"),
                              "blocks": payload.get("blocks")})
        return 200, {"Content-Type": "text/html"}, "ok"


    def _response(self, response_id: str, request: Request) -> Reply:
        """A response_url accepts JSON messages (as Slack does: `{"ok": true}`, 200)."""
        try:
            payload = request.json()
        except ValueError:
            return 400, {}, {"ok": False, "error": "invalid_payload"}
        if request.method != "POST" or not isinstance(payload, dict) or not payload.get("text"):
            return 400, {}, {"ok": False, "error": "no_text"}
        self.responses.append({"id": response_id, **payload})
        return 200, {}, {"ok": True}


def _slack_params(request: Request) -> dict[str, Any]:
    """Web API arguments from the query, a form body or a JSON body; form `blocks` is a JSON string."""
    params: dict[str, Any] = dict(request.query)
    if "json" in request.headers.get("Content-Type", ""):
        params.update(request.json() or {})
    elif request.body:
        params.update(parse_qsl(request.body.decode(), keep_blank_values=True))
    for key in ("blocks", "attachments"):
        if isinstance(params.get(key), str):
            params[key] = json.loads(params[key])
    return params


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]  # the envelope recipients the server accepted
    message: EmailMessage  # parsed with email.policy.default
    raw: bytes


def raw_field(raw: bytes, name: str) -> list[bytes]:
    """Each line of the header field `name` exactly as it came (its folds kept, line ends removed),
    from an email's raw bytes (CRLF on the wire, LF in an .eml file); [] when it is absent."""
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    for n, line in enumerate(head):
        if line.lower().startswith(name.lower().encode() + b":"):
            end = n + 1
            while end < len(head) and head[end][:1] in (b" ", b"\t"):
                end += 1
            return head[n:end]
    return []


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (a port picked first: `port=0` does not work in aiosmtpd 1.4.6).

    `fail_rcpt["a@x"] = "450 try later"` refuses one recipient; `fail_data = "451 ..."` refuses the
    message. `credentials={"user": "pw"}` advertises AUTH without TLS (loopback only) and records
    `logins`. `stop()` then `start()` brings it back on the same port.
    """

    def __init__(self, credentials: dict[str, str] | None = None) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.received: list[Received] = []
        self.fail_rcpt: dict[str, str] = {}
        self.fail_data: str | None = None
        self.credentials = credentials
        self.logins: list[str] = []
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    @property
    def rcpts(self) -> list[list[str]]:
        return [r.rcpt_tos for r in self.received]

    def start(self) -> SmtpServer:
        extra: dict[str, Any] = {}
        if self.credentials is not None:
            extra = {"authenticator": self._authenticate, "auth_require_tls": False}
        # A stopped Controller's loop is closed, so every start builds a new one on the same port.
        self._controller = Controller(_SmtpHandler(self), hostname=self.host, port=self.port,
                                      enable_SMTPUTF8=True, **extra)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult
        login, password = auth_data.login.decode(), auth_data.password.decode()
        if self.credentials and self.credentials.get(login) == password:
            self.logins.append(login)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # handled=True would hang the client


class _SmtpHandler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.owner.fail_rcpt:
            return self.owner.fail_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.owner.fail_data:
            return self.owner.fail_data
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.owner.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message,  # type: ignore[arg-type]
                                            envelope.content))
        return "250 Message accepted for delivery"
