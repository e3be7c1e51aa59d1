"""The hf_page source: embedded DailyPapers data first, the visible cards as a last resort, else an error."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime
from html import escape

import pytest
from fixtures import daily_items, golden, hf_page

from digestbot.errors import ParseError
from digestbot.http import Http
from digestbot.models import SourceMemory
from digestbot.sources import SourceOptions
from digestbot.sources.hf_page import HfPage

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def page(url: str = "http://unused") -> HfPage:
    return HfPage(SourceOptions(name="hf-page", kind="hf_page", url=url), Http(sleep=lambda s: None))


def test_a_date_page_is_read_from_its_data_props():
    items = daily_items(30, published=date(2026, 11, 19))[20:30]
    papers = page().parse(golden("hf_page_date.html"))
    assert [p.arxiv_id for p in papers] == [i["paper"]["id"] for i in items]
    # Only data-props carries abstracts, upvotes and AI keywords: the cards were not used.
    assert papers[0].abstract == " ".join(items[0]["paper"]["summary"].split())
    assert [p.upvotes for p in papers] == [i["paper"]["upvotes"] for i in items]


def test_a_search_page_gives_its_search_results():
    items = daily_items(35, published=date(2026, 11, 19))[30:35]
    assert [p.arxiv_id for p in page().parse(golden("hf_page_search.html"))] == [i["paper"]["id"] for i in items]


def test_without_data_props_the_cards_give_titles_and_ids(caplog):
    items = daily_items(25)[20:25]
    papers = page().parse(golden("hf_page_cards.html"))
    assert [(p.arxiv_id, p.title) for p in papers] == [(i["paper"]["id"], " ".join(i["paper"]["title"].split()))
                                                         for i in items]
    assert all(p.abstract == "" for p in papers) and "visible cards" in caplog.text


def test_a_bot_challenge_page_is_a_clear_parse_error():
    with pytest.raises(ParseError, match="no DailyPapers data and no paper cards.*hf_daily or hf_search") as info:
        page().parse(golden("hf_page_challenge.html"))
    assert info.value.source == "hf-page"


@pytest.mark.parametrize("props, reason", [
    ("{not json", "data-props is not valid JSON"),
    (json.dumps(["a list"]), "not a JSON object"),
    (json.dumps({"somethingElse": []}), "none of dailyPapers"),
    (json.dumps({"dailyPapers": [{"paper": {"id": "2411.1"}}]}), "item 0 has no title"),
])
def test_broken_embedded_data_is_a_parse_error(props, reason):
    body = f'<div data-target="DailyPapers" data-props="{escape(props, quote=True)}"></div>'.encode()
    with pytest.raises(ParseError, match=reason):
        page().parse(body)


def test_collect_fetches_the_page(http_server):
    http_server.route("/papers/date/2026-11-20", hf_page(daily_items(3)), headers={"Content-Type": "text/html"})
    assert len(page(http_server.url + "/papers/date/2026-11-20").collect(NOW, SourceMemory())) == 3
