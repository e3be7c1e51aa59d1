"""The arxiv source: the golden API page, paging with start/max_results, 3 s pacing, errors."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from fixtures import atom_entry, atom_feed, daily_items, golden
from pydantic import ValidationError

from digestbot.errors import ParseError
from digestbot.http import Http
from digestbot.models import SourceMemory
from digestbot.sources.arxiv import Arxiv, ArxivOptions

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def source(url: str = "http://unused", **options) -> tuple[Arxiv, list[float]]:
    slept: list[float] = []
    http = Http(sleep=slept.append, backoff=0.01, timeout=5)
    return Arxiv(ArxivOptions(name="arxiv-cl", kind="arxiv", url=url, query="cat:cs.CL", **options), http), slept


def test_parses_the_golden_page_with_bare_ids_and_clean_text():
    items = daily_items(12)
    papers = source()[0].parse(golden("arxiv_api.xml"))
    assert [p.arxiv_id for p in papers] == [i["paper"]["id"] for i in items] + ["hep-th/9901001"]
    first = papers[0]  # served as v2: the identity has no version
    assert first.title == " ".join(items[0]["paper"]["title"].split())
    assert first.abstract == " ".join(items[0]["paper"]["summary"].split())
    assert first.authors == tuple(a["name"] for a in items[0]["paper"]["authors"])
    assert first.url == f"https://arxiv.org/abs/{first.arxiv_id}"
    assert first.ai_keywords == ("cs.CL", "cs.LG") and first.sources == ("arxiv-cl",)
    assert first.published == datetime(2026, 11, 19, tzinfo=UTC)
    old = papers[-1]
    assert old.title == "Old-style identifiers: a string theory note" and old.key == "hep-th/9901001"


def test_pages_with_start_and_max_results_and_waits_3_seconds_between_requests(http_server):
    entries = [atom_entry(i) for i in daily_items(13, published=date(2026, 11, 19))]

    def api(request):
        start, size = int(request.query["start"]), int(request.query["max_results"])
        return 200, {"Content-Type": "application/atom+xml"}, atom_feed(entries[start:start + size], 13, start)

    http_server.route("/api/query", api)
    arxiv, slept = source(http_server.url + "/api/query", page_size=5, max_results=12)
    papers = arxiv.collect(NOW, SourceMemory())
    assert len(papers) == 12
    asked = [(r.query["start"], r.query["max_results"]) for r in http_server.requests]
    assert asked == [("0", "5"), ("5", "5"), ("10", "2")]
    assert {r.query["search_query"] for r in http_server.requests} == {"cat:cs.CL"}
    assert {r.query["sortBy"] for r in http_server.requests} == {"submittedDate"}
    # Two waits, each topping the gap since the previous request up to the 3 s arXiv asks for.
    assert len(slept) == 2 and all(2.0 < s <= 3.0 for s in slept)


def test_a_short_page_ends_the_paging(http_server):
    http_server.route("/api/query", golden("arxiv_api.xml"))  # 13 entries, fewer than a page of 100
    arxiv, slept = source(http_server.url + "/api/query")
    assert len(arxiv.collect(NOW, SourceMemory())) == 13
    assert len(http_server.requests) == 1 and slept == []


def test_the_delay_cannot_be_set_below_3_seconds():
    with pytest.raises(ValidationError):
        ArxivOptions(name="a", kind="arxiv", query="x", delay=1)


def test_an_error_entry_is_a_parse_error_naming_the_source_and_the_remedy():
    with pytest.raises(ParseError) as info:
        source()[0].parse(golden("arxiv_error.xml"))
    assert info.value.source == "arxiv-cl"
    assert "incorrect id format" in str(info.value) and "check `query`" in str(info.value)


@pytest.mark.parametrize("body, reason", [
    (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><title>x</title>", "invalid XML"),
    (b"<rss version='2.0'><channel/></rss>", "expected an Atom <feed>"),
    (b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><title>No id</title></entry></feed>", "no arXiv id"),
])
def test_bad_pages_are_parse_errors(body, reason):
    with pytest.raises(ParseError, match=reason):
        source()[0].parse(body)
