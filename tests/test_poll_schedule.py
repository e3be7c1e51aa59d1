"""Polling over time: conditional GET, catch-up after downtime, and what `status`, `sources check`
and `papers` show."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from fixtures import daily_items, golden, poll_context, write_config
from servers import in_order

from digestbot import cli, pipeline
from digestbot.schedule import next_poll
from digestbot.sources import SourceOptions
from digestbot.store import Store

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
SEARCH = """
[[sources]]
name = "search"
kind = "hf_search"
url = "{url}/search"
query = "inference"
every = "30m"
"""


def test_validators_are_saved_only_with_a_processed_body_and_a_304_is_no_change(http_server, tmp_path):
    good = json.dumps(daily_items(3)).encode()
    http_server.route("/search", in_order(
        (200, {"ETag": '"broken"', "Last-Modified": "Thu, 19 Nov 2026 08:00:00 GMT"}, b'[{"paper": '),
        (200, {"ETag": '"v2"', "Last-Modified": "Fri, 20 Nov 2026 08:00:00 GMT"}, good),
        (304, {"ETag": '"v2"'}, b""),
    ))
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url))
    failed = pipeline.poll(ctx, "search", NOW)
    assert failed.error and "invalid JSON" in failed.error
    assert ctx.store.source_memory("search").validators == {}  # else the next 304 would hide the fix

    ok = pipeline.poll(ctx, "search", NOW + timedelta(minutes=30))
    assert (ok.error, ok.new) == (None, 3)
    assert "If-None-Match" not in http_server.requests[1].headers
    [(url, validators)] = ctx.store.source_memory("search").validators.items()
    assert "q=inference" in url and validators == ('"v2"', "Fri, 20 Nov 2026 08:00:00 GMT")

    unchanged = pipeline.poll(ctx, "search", NOW + timedelta(minutes=60))
    assert (unchanged.error, unchanged.seen, unchanged.new) == (None, 0, 0)
    third = http_server.requests[2].headers
    assert third["If-None-Match"] == '"v2"' and third["If-Modified-Since"] == "Fri, 20 Nov 2026 08:00:00 GMT"
    state = ctx.store.source_states()["search"]
    assert state.last_success == NOW + timedelta(minutes=60) and ctx.store.count_papers() == 3
    assert list(ctx.store.source_memory("search").validators.values()) == [validators]  # still remembered


def test_hf_daily_catches_up_every_missed_day_after_downtime(http_server, tmp_path):
    http_server.today = date(2026, 11, 23)
    http_server.daily_papers({"2026-11-20": daily_items(2, published=date(2026, 11, 20))})
    ctx, _ = poll_context(tmp_path, f"""
[[sources]]
name = "hf"
kind = "hf_daily"
url = "{http_server.url}/api/daily_papers"
""")
    assert pipeline.poll(ctx, "hf", NOW).error is None
    http_server.requests.clear()
    assert pipeline.poll(ctx, "hf", NOW + timedelta(days=3)).error is None
    assert [r.query["date"] for r in http_server.requests] == [f"2026-11-{d}" for d in (20, 21, 22, 23)]


def test_next_poll_counts_every_from_the_last_poll_and_follows_cron():
    every = SourceOptions(name="a", kind="hf_daily", every="2h")
    cron = SourceOptions(name="b", kind="hf_daily", cron="0 6 * * *")
    assert next_poll(every, None, NOW) == NOW
    assert next_poll(every, NOW, NOW) == NOW + timedelta(hours=2)
    assert next_poll(cron, NOW, NOW) == datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
    assert next_poll(cron, datetime(2026, 11, 21, 6, 0, tzinfo=UTC), NOW) == datetime(2026, 11, 22, 6, tzinfo=UTC)


def test_status_shows_last_success_last_error_papers_seen_and_next_poll(http_server, tmp_path, capsys):
    http_server.route("/search", in_order((200, {}, daily_items(3)), (200, {}, b"<html>oops</html>")))
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url) + """
[[sources]]
name = "later"
kind = "feed"
url = "http://127.0.0.1:9/never"
cron = "0 6 * * *"
""")
    pipeline.poll(ctx, "search", NOW)
    pipeline.poll(ctx, "search", NOW + timedelta(minutes=30))
    assert cli.main(["-c", str(tmp_path / "config.toml"), "status"]) == 1  # its latest poll failed: unhealthy
    out = capsys.readouterr().out
    assert "search (hf_search, every 30m)" in out
    assert "last success 2026-11-20 09:30 UTC; papers seen 3" in out
    assert "next poll 2026-11-20 10:30 UTC" in out  # the failed poll at 10:00 + 30m
    assert "last error 2026-11-20 10:00 UTC: source 'search': invalid JSON" in out
    assert "later (feed, 0 6 * * *)" in out and "never polled" in out


def test_sources_check_prints_what_it_found_and_stores_nothing(http_server, tmp_path, capsys):
    http_server.route("/search", golden("hf_search.json"))
    path = write_config(tmp_path, SEARCH.format(url=http_server.url))
    assert cli.main(["-c", str(path), "sources", "check", "search"]) == 0
    captured = capsys.readouterr()
    first = json.loads(golden("hf_search.json"))[0]
    assert first.get("paper", first)["id"] in captured.out and "10 papers (nothing stored)" in captured.err
    store = Store(f"sqlite:///{tmp_path / 'digestbot.db'}")
    store.create_tables()
    assert store.count_papers() == 0 and store.source_states() == {}


def test_sources_check_of_a_broken_source_says_what_is_wrong(http_server, tmp_path, capsys):
    http_server.route("/search", b"")
    path = write_config(tmp_path, SEARCH.format(url=http_server.url))
    assert cli.main(["-c", str(path), "sources", "check", "search"]) == 1
    assert "source 'search': empty response body" in capsys.readouterr().err


def test_papers_json_lists_ids_and_every_source(http_server, tmp_path, capsys):
    http_server.route("/search", daily_items(2))
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url))
    pipeline.poll(ctx, "search", datetime.now(UTC))
    assert cli.main(["-c", str(tmp_path / "config.toml"), "papers", "--days", "1", "--json"]) == 0
    papers = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in papers] and {p["id"] for p in papers} == {i["paper"]["id"] for i in daily_items(2)}
    assert all(p["sources"] == ["search"] and set(p) == {"id", "title", "abstract", "authors", "url", "published",
                                                          "upvotes", "sources"} for p in papers)
