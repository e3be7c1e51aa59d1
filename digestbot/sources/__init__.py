"""Source kinds: each file in this package defines one `Source` subclass and registers it by `kind`.

A source turns one configured listing into `Paper`s: `collect()` fetches every page it needs through
the shared `Http` client and hands each body to `parse()`, a pure function of the bytes that raises
only `ParseError`. The class docstring is the user-facing help (`digestbot sources kinds`).
"""
from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime
from typing import TYPE_CHECKING, Callable, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ParseError
from ..models import Paper

if TYPE_CHECKING:
    from ..http import Http
    from ..models import SourceMemory

REGISTRY: dict[str, type["Source"]] = {}


def decoded(body: bytes, fail: Callable[[str], ParseError], expected: str) -> str:
    """The body as text; ParseError when it is empty or not UTF-8 (a byte-order mark is dropped)."""
    if not body.strip():
        raise fail(f"empty response body (expected {expected})")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}; expected {expected})") from None


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

    def __init__(self, options: SourceOptions, http: "Http | None" = None):
        self.options = options
        self.http = http
        self.name = options.name

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            REGISTRY[cls.kind] = cls

    @property
    def url(self) -> str:
        return self.options.url or self.default_url or ""

    def collect(self, now: datetime, memory: "SourceMemory") -> list[Paper]:
        """Fetch and parse everything this source lists now. Raises FetchError / ParseError."""
        raise NotImplementedError

    def parse(self, body: bytes) -> list[Paper]:
        """Parse one response body. Raises ParseError only."""
        raise NotImplementedError

    def fail(self, message: str) -> ParseError:
        return ParseError(self.name, message)

    def fetch_parsed(self, url: str, params: dict | None, memory: "SourceMemory") -> list[Paper]:
        """GET one listing conditionally and parse it; a 304 means "unchanged": no papers, no error.

        The response's validators go into `memory.new_validators` only after `parse` succeeded: the
        pipeline saves them in the same transaction as the papers, so a body that failed to parse is
        fetched in full again next time instead of hiding behind a 304 forever (FIELD-NOTES).
        """
        key = str(httpx.URL(url, params=params)) if params else url
        response = self.http.get(url, params, source=self.name, validators=memory.validators.get(key))
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


def build(options: SourceOptions, http: "Http | None" = None) -> Source:
    return load_all()[options.kind](options, http)
