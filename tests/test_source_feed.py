"""The feed source: arXiv's daily RSS (new / cross / replace), any other RSS or Atom feed, empty feeds."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fixtures import daily_items, golden, rss_feed

from digestbot.errors import ParseError
from digestbot.http import Http
from digestbot.models import SourceMemory
from digestbot.sources.feed import Feed, FeedOptions

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
BLOG_ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A lab blog</title><id>urn:lab</id>
<updated>2026-11-19T10:00:00Z</updated>
<entry><title>Our &lt;b&gt;new&lt;/b&gt; paper on KV caches</title><id>urn:post:1</id>
<link href="https://lab.example.org/posts/kv"/><updated>2026-11-19T10:00:00Z</updated>
<author><name>Ann Author</name></author>
<summary type="html">&lt;p&gt;We compress the &lt;em&gt;KV cache&lt;/em&gt; 4x.&lt;/p&gt;</summary></entry>
<entry><title>Read it on arXiv</title><id>urn:post:2</id><link href="https://arxiv.org/abs/2411.01003v2"/>
<updated>2026-11-18T10:00:00Z</updated></entry>
</feed>"""


def feed(url: str = "http://unused") -> Feed:
    return Feed(FeedOptions(name="arxiv-rss", kind="feed", url=url), Http(sleep=lambda s: None))


def test_arxiv_rss_new_and_cross_are_new_papers_replace_is_an_update_only():
    items = daily_items(14)
    papers = feed().parse(golden("arxiv_rss.xml"))
    by_id = {p.arxiv_id: p for p in papers}
    new = [items[i]["paper"]["id"] for i in (0, 1, 2, 12, 13)]
    assert [p.arxiv_id for p in papers if not p.update_only] == new
    assert [p.arxiv_id for p in papers if p.update_only] == [items[3]["paper"]["id"], "2301.99999"]
    first = by_id[new[0]]
    assert first.abstract == " ".join(items[0]["paper"]["summary"].split())  # no "arXiv:... Announce Type"
    assert first.authors == tuple(a["name"] for a in items[0]["paper"]["authors"])
    assert first.url == f"https://arxiv.org/abs/{new[0]}" and first.ai_keywords == ("cs.CL", "cs.LG")
    assert first.published == datetime(2026, 11, 20, 5, tzinfo=UTC)


def test_an_empty_announcement_day_is_no_papers_and_no_error():
    assert feed().parse(rss_feed([])) == []


def test_any_atom_feed_reads_titles_links_and_text_without_html():
    blog, arxiv_link = feed().parse(BLOG_ATOM)
    assert blog.title == "Our new paper on KV caches" and blog.arxiv_id is None
    assert blog.abstract == "We compress the KV cache 4x." and blog.url == "https://lab.example.org/posts/kv"
    assert blog.authors == ("Ann Author",) and not blog.update_only
    assert arxiv_link.arxiv_id == "2411.01003"  # an arXiv link gives the identity, without its version


def test_collect_fetches_the_configured_url(http_server):
    http_server.route("/rss/cs.CL", golden("arxiv_rss.xml"), headers={"Content-Type": "application/rss+xml"})
    assert len(feed(http_server.url + "/rss/cs.CL").collect(NOW, SourceMemory())) == 7


@pytest.mark.parametrize("body, reason", [
    (b"<html><body>Service unavailable</body></html>", "HTML page"),
    (b'{"items": []}', "not an RSS or Atom feed"),
    (b"<rss version='2.0'><channel><item><title>x</title>", "not well-formed XML.*truncated"),
    (b"<rss version='2.0'><channel><item><link>https://arxiv.org/abs/1</link></item></channel></rss>",
     "item 0 has no title"),
])
def test_bad_feeds_are_parse_errors_naming_the_source(body, reason):
    with pytest.raises(ParseError, match=reason) as info:
        feed().parse(body)
    assert info.value.source == "arxiv-rss"


def test_a_feed_without_url_is_a_config_error():
    with pytest.raises(ValueError):
        FeedOptions(name="f", kind="feed")
