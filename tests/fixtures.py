"""Fixture data for tests: the saved seed listings and the daily_papers.json items built from them.

Everything lives under tests/data/ (tests never read ../shared). Regenerate daily_papers.json with
`python tests/data/make_fixtures.py`.
"""
from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
SEEDS = DATA / "seeds"
SEED_FILES = tuple(sorted(p.name for p in SEEDS.glob("*.txt")))


def seed_bytes(name: str) -> bytes:
    """The raw bytes of one saved listing, e.g. seed_bytes("listing-privacy-inference.txt")."""
    return (SEEDS / name).read_bytes()


@lru_cache(maxsize=1)
def _daily_papers() -> tuple[dict, ...]:
    return tuple(json.loads((DATA / "daily_papers.json").read_text("utf-8")))


def daily_items(count: int | None = None, published: date | datetime | None = None) -> list[dict]:
    """The first `count` items (all 80 when None) of daily_papers.json, as fresh deep copies.

    The file is dated around 2026-11-20; the "no flood" rule ignores papers older than 7 days at first
    sighting, so both `publishedAt` fields (and `paper.submittedOnDailyAt`) are set to `published`
    (default: today, UTC): a date means that day at 00:00Z (never in the future on that day), a
    datetime that instant.
    """
    items = copy.deepcopy(list(_daily_papers()[:count]))
    when = published if published is not None else datetime.now(UTC).date()
    if isinstance(when, datetime):
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    else:
        stamp = f"{when.isoformat()}T00:00:00.000Z"
    for item in items:
        item["publishedAt"] = item["paper"]["publishedAt"] = item["paper"]["submittedOnDailyAt"] = stamp
    return items


# --- golden responses of the other source kinds (tests/data/make_source_fixtures.py writes them) -----

def golden(name: str) -> bytes:
    """The bytes of one golden response under tests/data/, e.g. golden("arxiv_api.xml")."""
    return (DATA / name).read_bytes()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def atom_entry(item: dict, version: int = 1, categories: tuple[str, ...] = ("cs.CL", "cs.LG")) -> str:
    """One arXiv API `<entry>` for a daily_papers item (same id, title and abstract, hard breaks kept)."""
    p = item["paper"]
    stamp = p["publishedAt"].replace(".000Z", "Z")
    authors = "".join(f"\n    <author><name>{_xml(a['name'])}</name></author>" for a in p["authors"])
    cats = "".join(f'\n    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in categories)
    return f"""  <entry>
    <id>http://arxiv.org/abs/{p['id']}v{version}</id>
    <updated>{stamp}</updated>
    <published>{stamp}</published>
    <title>{_xml(p['title'])}</title>
    <summary>  {_xml(p['summary'])}
</summary>{authors}
    <arxiv:comment>12 pages</arxiv:comment>
    <link href="http://arxiv.org/abs/{p['id']}v{version}" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/{p['id']}v{version}" rel="related" type="application/pdf"/>
    <arxiv:primary_category term="{categories[0]}" scheme="http://arxiv.org/schemas/atom"/>{cats}
  </entry>
"""


def atom_feed(entries: list[str], total: int, start: int = 0, query: str = "cat:cs.CL") -> bytes:
    """An arXiv API response page holding `entries` (from atom_entry)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"
      xmlns:arxiv="http://arxiv.org/schemas/atom">
  <link href="http://arxiv.org/api/query?search_query={_xml(query)}" rel="self" type="application/atom+xml"/>
  <title type="html">ArXiv Query: search_query={_xml(query)}&amp;start={start}</title>
  <id>http://arxiv.org/api/cHxbiOdZaP56ODnBPIenZhzg5f8</id>
  <updated>2026-11-20T00:00:00-05:00</updated>
  <opensearch:totalResults>{total}</opensearch:totalResults>
  <opensearch:startIndex>{start}</opensearch:startIndex>
  <opensearch:itemsPerPage>{len(entries)}</opensearch:itemsPerPage>
{''.join(entries)}</feed>
""".encode()


def rss_item(item: dict, announce: str, version: int = 1) -> str:
    """One item of arXiv's daily RSS listing for a daily_papers item."""
    p = item["paper"]
    creators = ", ".join(a["name"] for a in p["authors"])
    return f"""    <item>
      <title>{_xml(" ".join(p['title'].split()))}</title>
      <link>https://arxiv.org/abs/{p['id']}</link>
      <description>arXiv:{p['id']}v{version} Announce Type: {announce}
Abstract: {_xml(p['summary'])}</description>
      <guid isPermaLink="false">oai:arXiv.org:{p['id']}v{version}</guid>
      <category>cs.CL</category>
      <category>cs.LG</category>
      <pubDate>Fri, 20 Nov 2026 00:00:00 -0500</pubDate>
      <arxiv:announce_type>{announce}</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      <dc:creator>{_xml(creators)}</dc:creator>
    </item>
"""


def rss_feed(items: list[str]) -> bytes:
    return f"""<?xml version='1.0' encoding='UTF-8'?>
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">
  <channel>
    <title>cs.CL updates on arXiv.org</title>
    <link>http://rss.arxiv.org/rss/cs.CL</link>
    <description>cs.CL updates on the arXiv.org e-print archive.</description>
    <atom:link href="http://rss.arxiv.org/rss/cs.CL" rel="self" type="application/rss+xml"/>
    <docs>http://www.rssboard.org/rss-specification</docs>
    <language>en-us</language>
    <lastBuildDate>Fri, 20 Nov 2026 00:00:00 -0500</lastBuildDate>
    <managingEditor>rss-help@arxiv.org</managingEditor>
    <pubDate>Fri, 20 Nov 2026 00:00:00 -0500</pubDate>
    <skipDays><day>Saturday</day><day>Sunday</day></skipDays>
{''.join(items)}  </channel>
</rss>
""".encode()


def hf_page(items: list[dict] | None, *, cards: list[dict] = (), query: str | None = None) -> bytes:
    """A Hugging Face papers page: DailyPapers `data-props` (HTML-escaped JSON) and/or visible cards."""
    from html import escape
    props = ""
    if items is not None:
        data = {"dailyPapers": [] if query else items, "dateString": "2026-11-20", "periodType": "day",
                "nextDate": None, "prevDate": "2026-11-19", "lastUpdated": "2026-11-20T09:00:00.000Z"}
        if query is not None:
            data.update(query=query, searchResults=items)
        props = (f'<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" '
                 f'data-props="{escape(json.dumps(data), quote=True)}">')
    articles = "".join(
        f'<article class="relative flex flex-col overflow-hidden rounded-xl border">'
        f'<a href="/papers/{i["paper"]["id"]}" class="shadow-alternate"><img src="x.png"></a>'
        f'<div class="px-4"><h3 class="mb-1 text-lg font-semibold"><a href="/papers/{i["paper"]["id"]}" '
        f'class="line-clamp-3">{escape(" ".join(i["paper"]["title"].split()))}</a></h3></div></article>'
        for i in cards)
    return (f'<!doctype html>\n<html class=""><head><meta charset="utf-8"><title>Daily Papers - Hugging Face'
            f'</title></head><body><div class="flex min-h-dvh flex-col"><header></header><main>{props}'
            f'<section class="container grid gap-5">{articles}</section>{"</div>" if props else ""}'
            f'</main></div></body></html>\n').encode()


# --- a real pipeline over a SQLite file, for tests that poll configured sources -----------------------

def write_config(tmp: Path, sources_toml: str, query: str = "inference") -> Path:
    """A config with the given [[sources]] tables, one instant subscription, and the file channel."""
    path = tmp / "config.toml"
    path.write_text(f"""[bot]
database = "sqlite:///digestbot.db"
outbox = "outbox"

{sources_toml}

[[subscriptions]]
name = "everyone"
query = '{query}'
email = ["reader@example.org"]
schedule = "instant"
""")
    return path


def poll_context(tmp: Path, sources_toml: str, sleep=lambda s: None, clock_tolerance=None):
    """(Context, slept) for pipeline.poll: real config, store, matcher; Http with an injected sleep.

    Most tests poll as of a fixed date while the loopback server's `Date` is real time: they leave
    the clock check off (clock_tolerance=None); tests of that check pass a tolerance."""
    from digestbot import config as config_module
    from digestbot.app import App
    from digestbot.http import Http

    slept: list[float] = []
    http = Http(sleep=lambda s: (slept.append(s), sleep(s)), backoff=0.01, timeout=5,
                clock_tolerance=clock_tolerance)
    return App.from_config(config_module.load(write_config(tmp, sources_toml)), http=http), slept


# --- saved text listings (the `text` source), built from daily_papers items -------------------------

def text_entry(item: dict, date_line: str = "") -> str:
    """One paper of a saved Hugging Face listing: title, abstract (one long line), `·`, date line."""
    p = item["paper"]
    abstract = " ".join(p["summary"].split())
    abstract += " It is read as the abstract because it is long." * max(0, (220 - len(abstract)) // 40 + 1)
    tail = f"\n·\n{date_line}" if date_line else ""
    return f"{' '.join(p['title'].split())}\n{abstract}{tail}\n"


def text_listing(entries: list[str], header_date: str = "") -> bytes:
    """A saved listing: the page header (with its date line when given), then the entries."""
    head = "Daily Papers\nbyAK and the research community\n" + (f"{header_date}\n" if header_date else "")
    return (head + "\n".join(entries)).encode()
