"""The hf_daily source against a loopback server: dates, paging, parsing, politeness, HTTP errors."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from fixtures import daily_items
from servers import in_order

from digestbot.errors import FetchError, ParseError
from digestbot.http import Http
from digestbot.models import SourceMemory
from digestbot.sources.hf_daily import HfDaily, HfDailyOptions

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def source(url: str, **options) -> tuple[HfDaily, list[float]]:
    slept: list[float] = []
    http = Http(sleep=slept.append, backoff=0.01, timeout=5)
    return HfDaily(HfDailyOptions(name="hf", kind="hf_daily", url=url, **options), http), slept


def test_polls_today_and_yesterday_and_pages_until_a_short_page(http_server):
    items = daily_items(80, published=date(2026, 11, 20))
    http_server.today = date(2026, 11, 20)
    http_server.daily_papers({"2026-11-19": items[:25], "2026-11-20": items[25:]})
    hf, _ = source(http_server.url + "/api/daily_papers", limit=10)
    papers = hf.collect(NOW, SourceMemory())
    assert [p.arxiv_id for p in papers] == [i["paper"]["id"] for i in items]
    asked = [(r.query["date"], r.query["p"], r.query["limit"]) for r in http_server.requests]
    assert asked == [("2026-11-19", str(p), "10") for p in range(3)] + \
                    [("2026-11-20", str(p), "10") for p in range(6)]
    assert all(r.headers["User-Agent"].startswith("digestbot/") for r in http_server.requests)


def test_a_page_of_exactly_limit_items_asks_for_the_next_page(http_server):
    items = daily_items(20, published=date(2026, 11, 20))
    http_server.today = date(2026, 11, 20)
    http_server.daily_papers({"2026-11-20": items})
    hf, _ = source(http_server.url + "/api/daily_papers", limit=10)
    assert len(hf.collect(NOW, SourceMemory())) == 20
    assert [r.query["p"] for r in http_server.requests if r.query["date"] == "2026-11-20"] == ["0", "1", "2"]


def test_catch_up_polls_every_missed_day_up_to_the_limit():
    hf, _ = source("http://unused")
    last = datetime(2026, 11, 16, 23, 0, tzinfo=UTC)
    assert [w["date"] for w in hf.windows(NOW, last)] == [f"2026-11-{d}" for d in range(16, 21)]
    assert len(hf.windows(NOW, datetime(2026, 1, 1, tzinfo=UTC))) == 8  # 7 days back + today
    assert [w["date"] for w in hf.windows(NOW, None)] == ["2026-11-19", "2026-11-20"]


def test_parses_the_real_item_shape_leniently():
    item = daily_items(1, published=date(2026, 11, 20))[0]
    item["paper"].update(title="A  title\n  with   breaks", summary=" An\nabstract. ", upvotes=0,
                         ai_keywords=["kv cache"], ai_summary="TL;DR.", githubRepo="owner/name",
                         projectPage="javascript:alert(1)", brandNewKey={"x": 1})
    item["paper"]["id"] = "2411.00001v3"
    hf, _ = source("http://unused")
    [paper] = hf.parse(json.dumps([item]).encode())
    assert paper.title == "A title with breaks" and paper.abstract == "An abstract."
    assert paper.arxiv_id == "2411.00001" and paper.upvotes == 0
    assert paper.ai_keywords == ("kv cache",) and paper.ai_summary == "TL;DR."
    assert paper.github == "https://github.com/owner/name" and paper.project_page is None
    assert paper.url == "https://huggingface.co/papers/2411.00001"
    assert paper.published == datetime.fromisoformat(item["paper"]["publishedAt"].replace("Z", "+00:00"))


@pytest.mark.parametrize("body, reason", [
    (b"", "empty response body"),
    (b'[{"paper": {"id": "1", "title": "x"', "invalid JSON"),
    (b"<!DOCTYPE html><html>Just a moment...</html>", "HTML page"),
    (b'{"papers": []}', "expected a JSON array"),
    (b'[{"paper": {"id": "2411.1"}}]', "item 0 has no title"),
    (b'["just a string"]', "item 0 is a str"),
    (b'\xff\xfe[]', "not UTF-8"),
])
def test_bad_bodies_are_parse_errors_naming_the_source(body, reason):
    hf, _ = source("http://unused")
    with pytest.raises(ParseError) as info:
        hf.parse(body)
    assert info.value.source == "hf" and reason in str(info.value)


def test_429_and_503_honour_retry_after(http_server):
    ok = (200, {}, daily_items(3, published=date(2026, 11, 20)))
    http_server.route("/api/daily_papers", in_order((429, {"Retry-After": "7"}, {"error": "slow down"}),
                                                    (503, {"Retry-After": "3"}, "busy"), ok))
    hf, slept = source(http_server.url + "/api/daily_papers", period="week")
    papers = hf._collect_window({"week": "2026-W47"})
    assert len(papers) == 3 and slept == [7.0, 3.0]


def test_ratelimit_header_is_understood_and_waiting_is_capped(http_server):
    limited = (429, {"RateLimit": '"api";r=0;t=40'}, {"error": "rate limited"})
    http_server.route("/api/daily_papers", in_order(limited, limited, limited))
    slept: list[float] = []
    hf = HfDaily(HfDailyOptions(name="hf", kind="hf_daily", url=http_server.url + "/api/daily_papers"),
                 Http(sleep=slept.append, max_wait=100))
    with pytest.raises(FetchError) as info:
        hf._collect_window({"date": "2026-11-20"})
    assert slept == [40.0, 40.0]  # a third wait would pass max_wait
    assert "HTTP 429" in str(info.value) and "gave up" in str(info.value)


def test_400_is_a_fetch_error_with_the_servers_message(http_server):
    http_server.today = date(2026, 11, 20)
    http_server.daily_papers({})
    hf, slept = source(http_server.url + "/api/daily_papers")
    with pytest.raises(FetchError) as info:
        hf._collect_window({"date": "2026-11-25"})
    assert "HTTP 400" in str(info.value) and "Invalid date" in str(info.value) and slept == []


def test_5xx_is_retried_with_backoff_then_fails(http_server):
    http_server.route("/api/daily_papers", "oops", status=502)
    hf, slept = source(http_server.url + "/api/daily_papers")
    with pytest.raises(FetchError):
        hf._collect_window({"date": "2026-11-20"})
    assert len(slept) == 3 and slept[0] < slept[1] < slept[2]
    assert len(http_server.requests) == 4


def test_a_server_that_never_answers_times_out():
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    try:
        http = Http(timeout=0.3, retries=0, sleep=lambda s: None)
        with pytest.raises(FetchError) as info:
            http.get(f"http://127.0.0.1:{listener.getsockname()[1]}/", source="slow")
        assert "Timeout" in str(info.value)
    finally:
        listener.close()


def test_week_and_month_periods_poll_the_current_and_previous_window():
    week, _ = source("http://unused", period="week")
    month, _ = source("http://unused", period="month")
    assert week.windows(NOW, None) == [{"week": "2026-W46"}, {"week": "2026-W47"}]
    assert month.windows(datetime(2026, 1, 5, tzinfo=UTC), None) == [{"month": "2025-12"}, {"month": "2026-01"}]
