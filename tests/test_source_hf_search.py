"""The hf_search source: a saved search whose response mixes wrapped and flat items."""
from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fixtures import golden

from digestbot.errors import ParseError
from digestbot.http import Http
from digestbot.models import SourceMemory
from digestbot.sources.hf_search import HfSearch, HfSearchOptions

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def search(url: str = "http://unused", **options) -> HfSearch:
    return HfSearch(HfSearchOptions(name="hf-search", kind="hf_search", url=url,
                                    query="speculative decoding", **options), Http(sleep=lambda s: None))


def test_reads_wrapped_and_flat_items_alike():
    raw = json.loads(golden("hf_search.json"))
    assert any("paper" in i for i in raw) and any("paper" not in i for i in raw)  # the fixture mixes both
    papers = search().parse(golden("hf_search.json"))
    for item, paper in zip(raw, papers, strict=True):
        p = item.get("paper", item)
        assert paper.arxiv_id == p["id"] and paper.title == " ".join(p["title"].split())
        assert paper.upvotes == p["upvotes"] and paper.ai_keywords == tuple(p.get("ai_keywords", ()))
        assert paper.url == f"https://huggingface.co/papers/{p['id']}" and paper.sources == ("hf-search",)


def test_asks_the_search_api_with_query_and_limit(http_server):
    http_server.route("/api/papers/search", golden("hf_search.json"))
    papers = search(http_server.url + "/api/papers/search", limit=10).collect(NOW, SourceMemory())
    assert len(papers) == 10
    [request] = http_server.requests
    assert request.query == {"q": "speculative decoding", "limit": "10"}


def test_the_limit_is_bounded_and_the_query_required():
    with pytest.raises(ValueError):
        HfSearchOptions(name="s", kind="hf_search", query="")
    with pytest.raises(ValueError):
        HfSearchOptions(name="s", kind="hf_search", query="x", limit=0)


def test_an_error_object_is_a_parse_error_with_the_servers_words():
    with pytest.raises(ParseError, match="the server answered with an error: Invalid query") as info:
        search().parse(b'{"error": "Invalid query"}')
    assert info.value.source == "hf-search"
