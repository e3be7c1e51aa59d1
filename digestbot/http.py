"""The one place an httpx.Client is built: timeouts, User-Agent, redirects, retries, politeness.

`Http.get` retries what is worth retrying (connection errors, read timeouts, 5xx, 429) with
exponential backoff and jitter, honours `Retry-After` and Hugging Face's `RateLimit` header, and caps
the total time spent waiting so that one slow server cannot stall a poll. It refuses bodies larger than
`max_bytes` and raises `FetchError` naming the source when it gives up.
"""
from __future__ import annotations

import logging
import random
import re
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from . import __version__
from .errors import FetchError

log = logging.getLogger(__name__)

USER_AGENT = f"digestbot/{__version__} (self-hosted paper digest bot; +https://pypi.org/project/digestbot/)"
RETRY_STATUSES = {429, 500, 502, 503, 504}
_RATELIMIT_RESET = re.compile(r"(?:^|;)\s*t=(\d+)")


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
    sleep: object = time.sleep

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            follow_redirects=True,
            headers={"User-Agent": self.user_agent},
            transport=self.transport or httpx.HTTPTransport(retries=1),
        )
        self._last_request: dict[str, float] = {}

    def close(self) -> None:
        self.client.close()

    def get(self, url: str, params: dict | None = None, *, source: str,
            validators: tuple[str | None, str | None] | None = None) -> Response:
        """GET with retries; returns 2xx and 304 responses, raises FetchError for the rest."""
        headers = _conditional_headers(validators)
        waited, attempt = 0.0, 0
        while True:
            attempt += 1
            self._pace(url)
            try:
                response = self._fetch(url, params, headers, source)
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

    def _fetch(self, url: str, params: dict | None, headers: dict, source: str) -> Response:
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

    def _backoff(self, attempt: int) -> float:
        # Jitter within [b * 2^(n-1), b * 2^n): spread out, yet each wait longer than the one before.
        return self.backoff * 2 ** (attempt - 1) * (1 + random.random())

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
