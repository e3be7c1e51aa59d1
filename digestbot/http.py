"""The one place an httpx.Client is built: timeouts, User-Agent, redirects, retries, politeness.

`Http.get` retries what is worth retrying (connection errors, read timeouts, 5xx, 429) with
exponential backoff and jitter, honours `Retry-After` and Hugging Face's `RateLimit` header, and caps
the total time spent waiting so that one slow server cannot stall a poll. It refuses bodies larger than
`max_bytes` and raises `FetchError` naming the source when it gives up.

It also remembers, per source, the server's clock (the `Date` header) of the latest response, so that
a poll can tell when this machine's clock is wrong (`pipeline.poll`): judged by a wrong clock, every
paper would look older than it is and be recorded without ever being sent.
"""
from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from . import __version__
from .errors import DigestbotError, FetchError

log = logging.getLogger(__name__)

USER_AGENT = f"digestbot/{__version__} (self-hosted paper digest bot; +https://pypi.org/project/digestbot/)"
RETRY_STATUSES = {429, 500, 502, 503, 504}
_RATELIMIT_RESET = re.compile(r"(?:^|;)\s*t=(\d+)")
# How far this machine's clock may be from a source server's `Date` before a poll refuses to record:
# freshness, "seen" times and periods are all judged by it. Servers keep NTP time; the header has
# 1 s resolution, and a slow response can lag a little, so minutes, not seconds.
CLOCK_TOLERANCE = timedelta(minutes=5)


class ClockError(DigestbotError):
    """This machine's clock disagrees with a source server's: nothing of the poll may be recorded."""


@dataclass(slots=True)
class Response:
    url: str
    status: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def validators(self) -> tuple[str | None, str | None]:
        return self.headers.get("etag"), self.headers.get("last-modified")


@dataclass(frozen=True, slots=True)
class ServerDate:
    """The clock of the server behind a source, as its latest response's `Date` header gave it."""

    host: str
    date: datetime  # aware, UTC; whole seconds (the header has no finer resolution)
    received: float  # time.monotonic() when the response arrived


@dataclass
class Http:
    user_agent: str = USER_AGENT
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0  # first backoff in seconds; doubles each try, with jitter
    max_wait: float = 120.0  # total seconds one get() may spend sleeping before giving up
    max_bytes: int = 10 * 1024 * 1024
    transport: httpx.BaseTransport | None = None
    min_interval: dict[str, float] = field(default_factory=dict)  # host -> seconds between requests
    # None: never compare clocks (tests that poll as of a fixed date against a server on real time)
    clock_tolerance: timedelta | None = CLOCK_TOLERANCE
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            follow_redirects=True,
            headers={"User-Agent": self.user_agent},
            transport=self.transport or httpx.HTTPTransport(retries=1),
        )
        self._last_request: dict[str, float] = {}
        # One entry per source: a source is polled by one thread at a time, so no lock is needed.
        self._server_dates: dict[str, ServerDate] = {}

    def forget_server_date(self, source: str) -> None:
        """Start a poll of `source` afresh: only its own responses say what the server's clock is."""
        self._server_dates.pop(source, None)

    def close(self) -> None:
        self.client.close()

    def get(self, url: str, params: Mapping[str, str | int] | None = None, *, source: str,
            validators: tuple[str | None, str | None] | None = None) -> Response:
        """GET with retries; returns 2xx and 304 responses, raises FetchError for the rest."""
        headers = _conditional_headers(validators)
        waited, attempt = 0.0, 0
        while True:
            attempt += 1
            self._pace(url)
            try:
                response = self._fetch(url, params, headers, source)
                self._remember_date(source, response)
            except httpx.TransportError as exc:
                problem, delay = f"{type(exc).__name__}: {exc or 'no detail'}", self._backoff(attempt)
            else:
                if response.status < 400 or response.status not in RETRY_STATUSES:
                    return _check_status(response, source)
                problem = f"HTTP {response.status}"
                delay = retry_after(response.headers) or self._backoff(attempt)
            if attempt > self.retries or waited + delay > self.max_wait:
                raise FetchError(source, f"{problem} from {url} (gave up after {attempt} tries)")
            log.info("%s: %s from %s; retrying in %.1fs", source, problem, url, delay)
            self.sleep(delay)
            waited += delay

    def _fetch(self, url: str, params: Mapping[str, str | int] | None, headers: dict[str, str],
               source: str) -> Response:
        with self.client.stream("GET", url, params=params, headers=headers) as r:
            declared = int(r.headers.get("content-length") or 0)
            if declared > self.max_bytes:
                raise FetchError(source, f"{r.url} is {declared} bytes, over the {self.max_bytes} limit")
            chunks, size = [], 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(source, f"{r.url} sent over {self.max_bytes} bytes; refusing it")
                chunks.append(chunk)
            return Response(str(r.url), r.status_code, b"".join(chunks),
                            {k.lower(): v for k, v in r.headers.items()})

    def check_clock(self, source: str, now: datetime, taken: float) -> None:
        """Raise ClockError when `now` (this machine's time, read at time.monotonic() == `taken`)
        is more than CLOCK_TOLERANCE from the clock of the server that answered `source`'s latest
        request. A source that made no request (a local file) has nothing to compare with."""
        server = self._server_dates.get(source)
        if server is None or self.clock_tolerance is None:
            return
        ours = now.astimezone(UTC) + timedelta(seconds=server.received - taken)
        skew = ours - server.date
        if abs(skew) > self.clock_tolerance:
            raise ClockError(_clock_message(source, ours, server, skew, self.clock_tolerance))

    def _remember_date(self, source: str, response: Response) -> None:
        date = _server_clock(response.headers)
        if date is not None:
            self._server_dates[source] = ServerDate(urlsplit(response.url).netloc, date, time.monotonic())

    def _backoff(self, attempt: int) -> float:
        # Jitter within [b * 2^(n-1), b * 2^n): spread out, yet each wait longer than the one before.
        return self.backoff * 2.0 ** (attempt - 1) * (1 + random.random())

    def _pace(self, url: str) -> None:
        host = urlsplit(url).netloc
        gap = self.min_interval.get(host)
        if not gap:
            return
        wait = self._last_request.get(host, 0.0) + gap - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_request[host] = time.monotonic()


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `RateLimit: ...;t=N`."""
    value = headers.get("retry-after")
    if value:
        if value.strip().isdigit():
            return float(value)
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    match = _RATELIMIT_RESET.search(headers.get("ratelimit", ""))
    return float(match.group(1)) if match else None


def _clock_message(source: str, ours: datetime, server: ServerDate, skew: timedelta,
                   tolerance: timedelta) -> str:
    way = "ahead" if skew > timedelta(0) else "behind"
    return (f"source {source!r}: this machine's clock says {ours:%Y-%m-%d %H:%M:%S} UTC, but {server.host} "
            f"says {server.date:%Y-%m-%d %H:%M:%S} UTC: this clock is {_duration(abs(skew))} {way} (more "
            f"than {_duration(tolerance)} is refused). Nothing was recorded, and nothing is sent after "
            f"this poll: by this clock new papers would look too old to send, and digests of periods that have "
            f"not come would go out. Fix this machine's clock (enable NTP, e.g. `timedatectl set-ntp true`); "
            f"the next poll with a correct clock picks these papers up.")


def _duration(delta: timedelta) -> str:
    """`8 days`, `2 hours 5 minutes`, `3 minutes 5 seconds`: the two largest units, the second one
    rounded (a `Date` is in whole seconds: 7 days 23:59:59.6 ahead is 8 days ahead)."""
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    total = delta.total_seconds()
    top = next((i for i, (_, size) in enumerate(units) if total >= size), len(units) - 1)
    step = units[min(top + 1, len(units) - 1)][1]
    rest = round(total / step) * step
    parts = []
    for unit, size in units:
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def _server_clock(headers: dict[str, str]) -> datetime | None:
    """The server's time when it answered, as an aware UTC datetime: its `Date`, plus `Age` when a
    cache answered with a stored response (whose `Date` is when it was first made, RFC 9111 §5.1).
    None when absent or unreadable: nothing to compare with is no reason to fail a poll."""
    try:
        date = parsedate_to_datetime(headers.get("date", ""))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if date.tzinfo is None:  # "-0000": UTC by RFC 5322, naive to the parser
        date = date.replace(tzinfo=UTC)
    age = headers.get("age", "").strip()
    return date.astimezone(UTC) + timedelta(seconds=int(age) if age.isascii() and age.isdigit() else 0)


def _conditional_headers(validators: tuple[str | None, str | None] | None) -> dict[str, str]:
    etag, last_modified = validators or (None, None)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _check_status(response: Response, source: str) -> Response:
    if response.status >= 400:
        detail = response.content[:200].decode("utf-8", "replace").strip()
        raise FetchError(source, f"HTTP {response.status} from {response.url}: {detail}")
    return response
