"""Any RSS or Atom feed through feedparser, with arXiv's daily listing feeds understood in detail."""
from __future__ import annotations

import html
import logging
import re
from datetime import UTC, datetime
from typing import Any
from xml.sax import SAXParseException

import feedparser
from pydantic import Field

from ..models import Paper, SourceMemory, arxiv_id_of
from . import Source, SourceOptions, read_items
from .hf_json import http_url
from .xmlsafe import check_xml

log = logging.getLogger(__name__)
_ABSTRACT = re.compile(r"^arXiv:\S+\s+Announce Type:\s*\S+\s*(?:Abstract:\s*)?", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
NEW_TYPES = {"new", "cross"}
UPDATE_TYPES = {"replace", "replace-cross"}


class FeedOptions(SourceOptions):
    url: str = Field(min_length=1)  # no public default: the feed is the user's choice


class Feed(Source):
    """An RSS 2.0 or Atom feed, e.g. arXiv's daily listing `https://rss.arxiv.org/rss/cs.CL+cs.LG`.

    Every item is a paper; links or guids pointing at arXiv give its id. In arXiv's feeds,
    `announce_type` new and cross are new papers, while replace / replace-cross (a new version of an
    older paper) only update a paper already stored and never arrive as new ones. An empty feed
    (arXiv on days without an announcement) is fine. Options: url (required).
    """

    kind = "feed"
    Options = FeedOptions

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        return self.fetch_parsed(self.url, None, memory)

    def parse(self, body: bytes) -> list[Paper]:
        check_xml(body, self.fail, "an RSS or Atom feed")
        try:
            parsed = feedparser.parse(body, sanitize_html=False, resolve_relative_uris=False)
        except Exception as exc:  # feedparser promises not to raise; a bug there must not crash a poll
            raise self.fail(f"the feed could not be read ({type(exc).__name__})") from None
        if not parsed.version:
            problem = parsed.get("bozo_exception") or "no <rss>, <feed> or <rdf:RDF> root"
            raise self.fail(f"not an RSS or Atom feed ({problem}); check the `url`")
        if isinstance(parsed.get("bozo_exception"), SAXParseException):
            # Broken XML is most often a truncated download: keeping the items read so far would
            # record a partial listing as if it were the whole one.
            raise self.fail(f"the feed is not well-formed XML ({parsed.bozo_exception}); a truncated response?")
        return read_items(self.name, parsed.entries, self._paper)

    def _paper(self, entry: Any, index: int) -> Paper:
        title = _plain(entry.get("title"))
        if not title:
            link = entry.get("link") or entry.get("id")
            named = f" ({link[:60]!r})" if isinstance(link, str) and link else ""
            raise self.fail(f"item {index} has no title{named}")
        arxiv_id = _arxiv_id(entry.get("link")) or _arxiv_id(entry.get("id"))
        announce = str(entry.get("arxiv_announce_type") or "new").strip().lower()
        if announce not in NEW_TYPES | UPDATE_TYPES:
            log.debug("%s: item %d has unknown announce_type %r; read as new", self.name, index, announce)
        return Paper(
            title=title,
            abstract=_ABSTRACT.sub("", _plain(entry.get("summary"))),
            arxiv_id=arxiv_id,
            authors=tuple(_authors(entry)),
            published=_time(entry),
            url=http_url(entry.get("link")) or (f"https://arxiv.org/abs/{arxiv_id}" if arxiv_id else None),
            ai_keywords=tuple(t.get("term", "") for t in entry.get("tags") or () if t.get("term")),
            sources=(self.name,),
            update_only=announce in UPDATE_TYPES,
        )


def _arxiv_id(value: Any) -> str | None:
    return arxiv_id_of(value) if isinstance(value, str) else None


def _authors(entry: Any) -> list[str]:
    """arXiv puts all authors in one `dc:creator`, comma-separated; other feeds list them one by one."""
    names: list[str] = []
    for author in entry.get("authors") or ():
        names.extend(n.strip() for n in _plain(author.get("name")).split(",") if n.strip())
    return names


def _plain(value: Any) -> str:
    """Feed text may carry HTML; digests escape what they show, matching wants words only."""
    return html.unescape(_TAG.sub(" ", value)).strip() if isinstance(value, str) else ""


def _time(entry: Any) -> datetime | str | None:
    """The entry's date as feedparser read it; else the text it could not read, for Paper to report."""
    for parsed, raw in (("published_parsed", "published"), ("updated_parsed", "updated")):
        try:
            if entry.get(parsed):
                year, month, day, hour, minute, second = entry[parsed][:6]
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except (TypeError, ValueError, OverflowError):
            pass
        if entry.get(raw):
            return str(entry[raw])
    return None
