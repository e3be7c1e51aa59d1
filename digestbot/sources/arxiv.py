"""The arXiv API (`export.arxiv.org/api/query`): a saved search, read as Atom 1.0."""
from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from pydantic import Field

from ..models import Paper, SourceMemory, arxiv_id_of
from . import Params, Source, SourceOptions, read_items
from .xmlsafe import parse_xml

log = logging.getLogger(__name__)
NS = {"a": "http://www.w3.org/2005/Atom", "os": "http://a9.com/-/spec/opensearch/1.1/",
      "arxiv": "http://arxiv.org/schemas/atom"}
ARXIV_ABS = "https://arxiv.org/abs/{}"


class ArxivOptions(SourceOptions):
    query: str = Field(min_length=1)
    page_size: int = Field(default=100, ge=1, le=2000)
    max_results: int = Field(default=200, ge=1, le=10000)
    sort_by: str = Field(default="submittedDate", pattern="^(submittedDate|lastUpdatedDate|relevance)$")
    delay: float = Field(default=3.0, ge=3.0)  # arXiv asks for one request every 3 s; never less


class Arxiv(Source):
    """arXiv API search: the newest papers matching an arXiv query, e.g. `cat:cs.CL AND abs:inference`.

    Pages with `start`/`page_size` up to `max_results` papers, newest first, waiting at least
    `delay` (>= 3) seconds between requests to the arXiv host as arXiv asks. Ids lose their version
    (`2407.13168v2` is the paper `2407.13168`), so a new version never counts as a new paper.
    Options: url (default the public API), query (required), page_size (<= 2000), max_results,
    sort_by (submittedDate | lastUpdatedDate | relevance), delay.
    """

    kind = "arxiv"
    Options = ArxivOptions
    default_url = "http://export.arxiv.org/api/query"
    options: ArxivOptions

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        self.client().min_interval[urlsplit(self.url).netloc] = self.options.delay
        papers: list[Paper] = []
        start, size = 0, self.options.page_size
        while start < self.options.max_results:
            wanted = min(size, self.options.max_results - start)
            params: Params = {"search_query": self.options.query, "sortBy": self.options.sort_by,
                              "sortOrder": "descending", "start": start, "max_results": wanted}
            batch = self.fetch_parsed(self.url, params, memory)
            papers.extend(batch)
            # A short page is the end; `totalResults` may overstate what arXiv will really serve.
            if len(batch) < wanted:
                break
            start += len(batch)
        return papers

    def parse(self, body: bytes) -> list[Paper]:
        root = parse_xml(body, self.fail, "an arXiv API Atom feed")
        if root.tag != f"{{{NS['a']}}}feed":
            raise self.fail(f"expected an Atom <feed>, got <{root.tag}>")
        entries = root.findall("a:entry", NS)
        if len(entries) == 1 and _text(entries[0], "a:title") == "Error":
            raise self.fail(f"arXiv rejected the query: {_text(entries[0], 'a:summary')[:200]} "
                            f"(check `query`; see https://info.arxiv.org/help/api/user-manual.html)")
        return read_items(self.name, entries, self._paper)

    def _paper(self, entry: Element, index: int) -> Paper:
        raw_id = _text(entry, "a:id")
        arxiv_id = arxiv_id_of(raw_id)
        title = _text(entry, "a:title")
        if not title or not arxiv_id:
            named = f"id {raw_id[:60]!r}; " if raw_id else ""
            raise self.fail(f"entry {index} has no {'title' if not title else 'arXiv id'} "
                            f"({named}not an arXiv API entry?)")
        return Paper(
            title=title, abstract=_text(entry, "a:summary"), arxiv_id=arxiv_id,
            authors=tuple(n for n in (_text(a, "a:name") for a in entry.findall("a:author", NS)) if n),
            published=_text(entry, "a:published"),  # Paper reads it, and reports one that is no date
            url=ARXIV_ABS.format(arxiv_id),  # the version-less page always shows the latest version
            # arXiv categories answer `keyword:` queries (README, "Subscriptions"), like Hugging Face's ai_keywords.
            ai_keywords=tuple(c.get("term", "") for c in entry.findall("a:category", NS) if c.get("term")),
            sources=(self.name,),
        )


def _text(element: Element, path: str) -> str:
    found = element.find(path, NS)
    return (found.text or "").strip() if found is not None else ""
