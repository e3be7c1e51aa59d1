"""Source kinds: each file in this package defines one `Source` subclass and registers it by `kind`.

A source turns one configured listing into `Paper`s: `collect()` fetches every page it needs through
the shared `Http` client and hands each body to `parse()`, a pure function of the bytes that raises
only `ParseError`. The class docstring is the user-facing help (`digestbot sources kinds`).
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import FetchError, ParseError
from ..models import Paper

if TYPE_CHECKING:
    from ..http import Http
    from ..models import SourceMemory

log = logging.getLogger(__name__)
REGISTRY: dict[str, type[Source]] = {}
# Listings date papers by UTC day, and a poll may run a little ahead of a source's clock: a date more
# than this ahead of ours is a wrong one (year 9999, a typo), not a paper from the future.
FUTURE_SLACK = timedelta(days=2)
Item = TypeVar("Item")
Params = dict[str, str | int]  # a URL's query parameters


def decoded(body: bytes, fail: Callable[[str], ParseError], expected: str) -> str:
    """The body as text; ParseError when it is empty or not UTF-8 (a byte-order mark is dropped)."""
    if not body.strip():
        raise fail(f"empty response body (expected {expected})")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}; expected {expected})") from None


def read_items(source: str, items: Iterable[Item], build: Callable[[Item, int], Paper]) -> list[Paper]:
    """The papers of a listing's items, one at a time: the error boundary of every source kind.

    `build(item, index)` makes a Paper of one item or raises (ParseError for a missing title or id);
    the Paper checks its own values, and a date too far ahead of the clock is dropped here. One bad
    item is skipped with a warning naming the source and the item, and a value that was clamped or
    dropped is reported the same way: the other items are kept. Only when every item fails is the
    listing itself wrong (a format change): ParseError, with the first item's reason.
    """
    papers: list[Paper] = []
    failures: list[str] = []
    limit = datetime.now(UTC) + FUTURE_SLACK
    for index, raw in enumerate(items):
        try:
            paper = build(raw, index)
        except Exception as exc:  # noqa: BLE001 - whatever one item holds must not cost the others
            failures.append(_reason(exc, index))
            continue
        if not paper.title:  # it was only invisible characters: it would share its empty key with others
            failures.append(f"item {index} has no visible title")
            continue
        if paper.published is not None and paper.published > limit:
            paper.problems.append(f"date {paper.published:%Y-%m-%d} is more than {FUTURE_SLACK.days} days ahead "
                                  f"of this machine's clock; kept without a date (if every date is, check the clock)")
            paper.published = None
        for problem in paper.problems:
            log.warning("source %r: item %d (%s): %s", source, index, _named(paper), problem)
        papers.append(paper)
    if failures and not papers:
        more = f" (and the other {len(failures) - 1} items fail too)" if len(failures) > 1 else ""
        raise ParseError(source, failures[0] + more)
    for reason in failures:
        log.warning("source %r: %s; skipped this item, the other %d are read", source, reason, len(papers))
    return papers


def _reason(exc: Exception, index: int) -> str:
    if isinstance(exc, ParseError):
        return exc.reason
    if isinstance(exc, ValueError):  # Paper refusing a value
        return f"item {index}: {exc}"
    return f"item {index}: {type(exc).__name__}: {exc} (a bug in digestbot? please report it)"


def _named(paper: Paper) -> str:
    """How a warning names an item: its arXiv id and the start of its title."""
    title = paper.title if len(paper.title) <= 60 else paper.title[:57] + "..."
    return f"{paper.arxiv_id} {title!r}" if paper.arxiv_id else repr(title)


class SourceOptions(BaseModel):
    """Keys every `[[sources]]` table accepts; a kind adds its own by subclassing."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: str
    url: str | None = None
    every: str | None = "15m"
    cron: str | None = None


class Source:
    kind: ClassVar[str]
    Options: ClassVar[type[SourceOptions]] = SourceOptions
    default_url: ClassVar[str | None] = None

    def __init__(self, options: SourceOptions, http: Http | None = None):
        self.options = options
        self.http = http
        self.name = options.name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            REGISTRY[cls.kind] = cls

    @property
    def url(self) -> str:
        return self.options.url or self.default_url or ""

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        """Fetch and parse everything this source lists now. Raises FetchError / ParseError."""
        raise NotImplementedError

    def parse(self, body: bytes) -> list[Paper]:
        """Parse one response body. Raises ParseError only."""
        raise NotImplementedError

    def fail(self, message: str) -> ParseError:
        return ParseError(self.name, message)

    def client(self) -> Http:
        """The shared HTTP client; FetchError for a source built without one (to parse bodies only)."""
        if self.http is None:
            raise FetchError(self.name, "no HTTP client to download the listing with")
        return self.http

    def fetch_parsed(self, url: str, params: Params | None, memory: SourceMemory) -> list[Paper]:
        """GET one listing conditionally and parse it; a 304 means "unchanged": no papers, no error.

        The response's validators go into `memory.new_validators` only after `parse` succeeded: the
        pipeline saves them in the same transaction as the papers, so a body that failed to parse is
        fetched in full again next time instead of hiding behind a 304 forever.
        """
        # httpx here, not at the top: a render child (render/apart.py) imports this module through the
        # config, never fetches, and would carry httpx's 16 MB of imports for nothing
        from httpx import URL
        key = str(URL(url, params=params)) if params else url
        response = self.client().get(url, params, source=self.name, validators=memory.validators.get(key))
        if response.not_modified:
            if key in memory.validators:  # still current: carried over (the store keeps only these)
                memory.new_validators[key] = memory.validators[key]
            return []
        papers = self.parse(response.content)
        if any(response.validators):
            memory.new_validators[key] = response.validators
        return papers


def load_all() -> dict[str, type[Source]]:
    """Import every module of this package so that each source kind registers itself."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return REGISTRY


def build(options: SourceOptions, http: Http | None = None) -> Source:
    return load_all()[options.kind](options, http)
