"""One bad item never blocks its source (issue 16, point 9).

Every source kind is served by the loopback HTTP server with one bad item among good ones and polled
through the real pipeline (config, SQLite store, matcher): the good items are stored, the bad one is
skipped or has its value clamped / dropped, and a WARNING names the source and the item.
"""
from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures import (
    atom_entry,
    atom_feed,
    daily_items,
    hf_page,
    poll_context,
    rss_feed,
    rss_item,
    text_entry,
    text_listing,
)

from digestbot import pipeline

MAX_COUNT = 2**31 - 1  # PostgreSQL's INTEGER: the cap both databases hold
NOW = datetime.now(UTC)  # the sources judge "in the future" by the real clock
GOOD = 5
BAD = 2  # the index of the bad item among them
FAR = (NOW + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def stored(tmp: Path) -> dict[str, tuple]:
    """title -> (arxiv_id, upvotes, published, url) as the database holds them (not through Paper)."""
    with sqlite3.connect(tmp / "digestbot.db") as db:
        rows = db.execute("SELECT title, arxiv_id, upvotes, published, url FROM paper").fetchall()
    return {title: rest for title, *rest in rows}


def polled(tmp: Path, http_server, kind: str, path: str, body: bytes, extra: str = "") -> pipeline.PollResult:
    http_server.route(path, body)
    ctx, _ = poll_context(tmp, f"""
[[sources]]
name = "bad-{kind}"
kind = "{kind}"
url = "{http_server.url}{path}"
{extra}""")
    return pipeline.poll(ctx, f"bad-{kind}", NOW)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def set_paper(**values) -> Callable[[dict], None]:
    return lambda item: item["paper"].update(values)


def set_both(key: str, value) -> Callable[[dict], None]:
    """hf items carry `publishedAt` / `upvotes` in the paper and (some) on the item too."""
    return lambda item: (item["paper"].__setitem__(key, value), item.__setitem__(key, value))


def replace_item(value) -> Callable[[list], None]:
    return lambda items: items.__setitem__(BAD, value)


ANY = object()  # any upvote count
# (case, change to the bad item, kept?, what its stored row shows: (upvotes, published is None)); a key
# digestbot does not read ("unread") changes nothing and is not worth a warning.
JSON_CASES = [
    ("upvotes 2**64", set_both("upvotes", 2**64), True, (MAX_COUNT, False)),
    ("upvotes -5", set_both("upvotes", -5), True, (0, False)),
    ("upvotes 1.5", set_both("upvotes", 1.5), True, (0, False)),
    ("upvotes huge float", set_both("upvotes", 1e300), True, (MAX_COUNT, False)),
    ("upvotes string", set_both("upvotes", "many"), True, (0, False)),
    ("upvotes digits", set_both("upvotes", "99999999999999999999999"), True, (MAX_COUNT, False)),
    ("upvotes bool", set_both("upvotes", True), True, (0, False)),
    ("numComments 2**64", lambda item: item.update(numComments=2**64), True, "unread"),
    ("date garbage", set_both("publishedAt", "next tuesday"), True, (ANY, True)),
    ("date year 0", set_both("publishedAt", "0000-01-01T00:00:00Z"), True, (ANY, True)),
    ("date year 99999", set_both("publishedAt", "99999-01-01T00:00:00Z"), True, (ANY, True)),
    ("date far future", set_both("publishedAt", FAR), True, (ANY, True)),
    ("date past the last datetime", set_both("publishedAt", "9999-12-31T23:00:00-05:00"), True, (ANY, True)),
    ("date a number", set_both("publishedAt", 1732000000), True, (ANY, True)),
    ("title not text", lambda item: (item["paper"].update(title=42), item.update(title=42)), False, None),
    ("title invisible", lambda item: (item["paper"].update(title="\u200b\u202e "), item.update(title="\u200b")),
     False, None),
    ("paper not an object", lambda item: item.update(paper=[1, 2]), False, None),
]
ITEM_CASES = [("item not an object", replace_item("just a string")), ("item null", replace_item(None)),
              ("item a list", replace_item([{"paper": {}}]))]


def json_body(kind: str, items: list[dict]) -> tuple[str, bytes, str]:
    """(path, body, extra options) serving `items` the way `kind` reads them."""
    if kind == "hf_search":
        return "/search", json.dumps(items).encode(), 'query = "inference"'
    if kind == "hf_page":
        return "/papers/trending", hf_page(items), ""
    return "/api/daily_papers", json.dumps(items).encode(), ""


@pytest.mark.parametrize("kind", ["hf_daily", "hf_search", "hf_page"])
@pytest.mark.parametrize("case, change, kept, row", JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_one_bad_value_in_a_json_item_costs_at_most_that_item(kind, case, change, kept, row, http_server,
                                                               tmp_path, caplog):
    items = daily_items(GOOD, published=NOW.date())
    bad = items[BAD]["paper"]
    bad_id, bad_title = bad["id"], bad["title"]
    change(items[BAD])
    result = poll_json(http_server, tmp_path, kind, items)
    assert result.error is None, result.error
    papers = stored(tmp_path)
    good_ids = {i["paper"]["id"] for n, i in enumerate(items) if n != BAD}
    assert good_ids <= {r[0] for r in papers.values()}
    assert len(papers) == GOOD - (not kept)
    said = [w for w in warnings(caplog) if f"source 'bad-{kind}'" in w]
    if row == "unread":
        assert said == []
        return
    assert said and all(bad_id in w or f"item {BAD}" in w for w in said), warnings(caplog)
    if kept:
        [(_, upvotes, published, _)] = [r for r in papers.values() if r[0] == bad_id]
        assert (upvotes if row[0] is not ANY else ANY, published is None) == row
        assert bad_id in said[0] and " ".join(bad_title.split())[:40] in said[0]


def poll_json(http_server, tmp_path, kind, items) -> pipeline.PollResult:
    path, body, extra = json_body(kind, items)
    if kind == "hf_daily":  # the real paging: today's list (and an empty yesterday)
        http_server.daily_papers({NOW.date().isoformat(): items})
        ctx, _ = poll_context(tmp_path, f"""
[[sources]]
name = "bad-hf_daily"
kind = "hf_daily"
url = "{http_server.url}{path}"
""")
        return pipeline.poll(ctx, "bad-hf_daily", NOW)
    return polled(tmp_path, http_server, kind, path, body, extra)


@pytest.mark.parametrize("kind", ["hf_daily", "hf_search", "hf_page"])
@pytest.mark.parametrize("case, change", ITEM_CASES, ids=[c[0] for c in ITEM_CASES])
def test_an_item_that_is_not_a_paper_object_is_skipped_alone(kind, case, change, http_server, tmp_path, caplog):
    items: list = daily_items(GOOD, published=NOW.date())
    change(items)
    result = poll_json(http_server, tmp_path, kind, items)
    assert result.error is None, result.error
    assert len(stored(tmp_path)) == GOOD - 1
    [said] = [w for w in warnings(caplog) if f"source 'bad-{kind}'" in w]
    assert f"item {BAD}" in said and "skipped" in said


def test_a_huge_upvote_count_is_stored_as_the_cap_and_the_next_poll_still_works(http_server, tmp_path, caplog):
    items = daily_items(GOOD, published=NOW.date())
    items[BAD]["paper"]["upvotes"] = 2**64
    path, body, extra = json_body("hf_search", items)
    assert polled(tmp_path, http_server, "hf_search", path, body, extra).error is None
    ctx, _ = poll_context(tmp_path, f'[[sources]]\nname = "bad-hf_search"\nkind = "hf_search"\n'
                                    f'url = "{http_server.url}{path}"\n{extra}\n')
    again = pipeline.poll(ctx, "bad-hf_search", NOW + timedelta(minutes=30))
    assert (again.error, again.seen, again.new) == (None, GOOD, 0)
    [upvotes] = [r[1] for r in stored(tmp_path).values() if r[0] == items[BAD]["paper"]["id"]]
    assert upvotes == MAX_COUNT


# --- arXiv API ---------------------------------------------------------------------------------------

def arxiv_entries(change: Callable[[str], str]) -> bytes:
    items = daily_items(GOOD, published=NOW.date())
    entries = [atom_entry(i) for i in items]
    entries[BAD] = change(entries[BAD])
    return atom_feed(entries, total=GOOD)


def _published(text: str) -> Callable[[str], str]:
    return lambda entry: entry.replace(entry[entry.index("<published>"):entry.index("</published>")],
                                       f"<published>{text}")


ARXIV_CASES = [
    ("date garbage", _published("yesterday"), True),
    ("date year 99999", _published("99999-01-01T00:00:00Z"), True),
    ("date far future", _published(FAR.replace(".000Z", "Z")), True),
    ("no title", lambda e: e.replace(e[e.index("<title>"):e.index("</title>")], "<title>"), False),
    ("id a path", lambda e: e.replace(e[e.index("<id>"):e.index("</id>")], "<id>http://arxiv.org/abs/../../x"),
     False),
]


@pytest.mark.parametrize("case, change, kept", ARXIV_CASES, ids=[c[0] for c in ARXIV_CASES])
def test_one_bad_arxiv_entry_costs_at_most_that_entry(case, change, kept, http_server, tmp_path, caplog):
    result = polled(tmp_path, http_server, "arxiv", "/api/query", arxiv_entries(change),
                    'query = "cat:cs.CL"\nmax_results = 5\ndelay = 3')
    assert result.error is None, result.error
    papers = stored(tmp_path)
    assert len(papers) == GOOD - (not kept)
    assert all(".." not in (r[0] or "") and ".." not in (r[3] or "") for r in papers.values())
    [said] = [w for w in warnings(caplog) if "source 'bad-arxiv'" in w]
    assert f"item {BAD}" in said or f"entry {BAD}" in said
    if kept:
        assert sum(r[2] is None for r in papers.values()) == 1


# --- RSS / Atom feeds --------------------------------------------------------------------------------

def _rss(change: Callable[[str], str]) -> bytes:
    items = [rss_item(i, "new") for i in daily_items(GOOD, published=NOW.date())]
    items[BAD] = change(items[BAD])
    return rss_feed(items)


def _pub(text: str) -> Callable[[str], str]:
    return lambda item: item.replace("Fri, 20 Nov 2026 00:00:00 -0500", text)


FEED_CASES = [
    ("date garbage", _pub("the day after tomorrow"), True),
    ("date year 99999", _pub("Fri, 20 Nov 99999 00:00:00 -0500"), True),
    ("date far future", _pub((NOW + timedelta(days=400)).strftime("%a, %d %b %Y %H:%M:%S +0000")), True),
    ("no title", lambda item: item.replace(item[item.index("<title>"):item.index("</title>")], "<title>"), False),
]


@pytest.mark.parametrize("case, change, kept", FEED_CASES, ids=[c[0] for c in FEED_CASES])
def test_one_bad_feed_item_costs_at_most_that_item(case, change, kept, http_server, tmp_path, caplog):
    result = polled(tmp_path, http_server, "feed", "/rss", _rss(change))
    assert result.error is None, result.error
    papers = stored(tmp_path)
    assert len(papers) == GOOD - (not kept)
    [said] = [w for w in warnings(caplog) if "source 'bad-feed'" in w]
    assert f"item {BAD}" in said
    if kept:
        assert sum(r[2] is None for r in papers.values()) == 1


# --- saved text listings -----------------------------------------------------------------------------

def _day(when: datetime) -> str:
    return f"{when:%b} {when.day}, {when.year}"


TEXT_CASES = [
    ("upvotes 2**64", f"{_day(NOW)} {2**64}", (MAX_COUNT, False)),
    ("upvotes 150 digits", f"{_day(NOW)} {'9' * 150}", (MAX_COUNT, False)),
    ("date far future", f"{_day(NOW + timedelta(days=400))} 3", (3, True)),
]


@pytest.mark.parametrize("case, date_line, row", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_one_bad_value_in_a_text_listing_costs_only_that_value(case, date_line, row, http_server, tmp_path, caplog):
    items = daily_items(GOOD, published=NOW.date())
    entries = [text_entry(i, f"{_day(NOW)} 7") for i in items]
    entries[BAD] = text_entry(items[BAD], date_line)
    result = polled(tmp_path, http_server, "text", "/listing.txt", text_listing(entries))
    assert result.error is None, result.error
    papers = stored(tmp_path)
    assert len(papers) == GOOD
    title = " ".join(items[BAD]["paper"]["title"].split())
    assert (papers[title][1], papers[title][2] is None) == row
    [said] = [w for w in warnings(caplog) if "source 'bad-text'" in w]
    assert title[:40] in said


def test_a_digit_int_cannot_read_does_not_fail_a_text_listing(http_server, tmp_path):
    items = daily_items(GOOD, published=NOW.date())
    entries = [text_entry(i, f"{_day(NOW)} 7") for i in items]
    entries[BAD] = entries[BAD].rstrip("\n") + "\n²\n"  # str.isdigit() says yes, int() says no
    result = polled(tmp_path, http_server, "text", "/listing.txt", text_listing(entries))
    assert result.error is None, result.error
    assert len(stored(tmp_path)) == GOOD
