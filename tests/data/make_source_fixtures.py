"""Write the golden responses of the hf_search, hf_page, arxiv and feed sources into tests/data/.

    python tests/data/make_source_fixtures.py

Every file is built from daily_papers.json (so the same paper has the same id and title in every
source, which the cross-source identity tests rely on) in the real shapes of ../shared/formats/:
an arXiv API Atom page (versions v1..v3, an old-style id, hard line breaks), an arXiv API error feed,
an arXiv daily RSS listing (new, cross, replace, replace-cross items), Hugging Face pages with and
without `data-props`, a bot-challenge page, and a search response mixing wrapped and flat items.
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from fixtures import atom_entry, atom_feed, daily_items, hf_page, rss_feed, rss_item  # noqa: E402

OLD_STYLE = {"paper": {"id": "hep-th/9901001", "title": "Old-style identifiers:\n  a string theory note",
                       "summary": "An abstract of a paper with an old-style arXiv identifier.",
                       "publishedAt": "2026-11-19T00:00:00.000Z", "authors": [{"name": "Ann Author"}]}}
UNKNOWN = {"paper": {"id": "2301.99999", "title": "A paper we never saw announced",
                     "summary": "Its new version is announced as replace-cross.",
                     "publishedAt": "2023-01-30T00:00:00.000Z", "authors": [{"name": "Bo Writer"}]}}
ERROR_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <link href="http://arxiv.org/api/query?search_query=cat:%2A%2A%2A" rel="self" type="application/atom+xml"/>
  <title type="html">ArXiv Query: search_query=cat:***</title>
  <id>http://arxiv.org/api/B5Ixcw1yY0Ht2sZTZr2k4pU7t4s</id>
  <updated>2026-11-20T00:00:00-05:00</updated>
  <opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">1</opensearch:totalResults>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_***</id>
    <title>Error</title>
    <summary>incorrect id format for ***</summary>
    <updated>2026-11-20T00:00:00-05:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_***" rel="alternate" type="text/html"/>
    <author><name>arXiv api core</name></author>
  </entry>
</feed>
"""
CHALLENGE = b"""<!DOCTYPE html><html lang="en"><head><title>Just a moment...</title></head>
<body><div class="main-wrapper"><h1>huggingface.co</h1><p>Verifying you are human. This may take a few
seconds.</p><noscript>Enable JavaScript and cookies to continue</noscript></div></body></html>
"""


def main() -> None:
    items = daily_items(60, published=date(2026, 11, 19))
    entries = [atom_entry(items[0], 2), atom_entry(items[1], 3)] + [atom_entry(i) for i in items[2:12]]
    entries.append(atom_entry(OLD_STYLE, 2, ("hep-th",)))
    files = {
        "arxiv_api.xml": atom_feed(entries, total=len(entries), query="cat:cs.CL AND abs:inference"),
        "arxiv_error.xml": ERROR_FEED,
        "arxiv_rss.xml": rss_feed([rss_item(i, "new") for i in items[:3]]
                                  + [rss_item(i, "cross") for i in items[12:14]]
                                  + [rss_item(items[3], "replace", 2), rss_item(UNKNOWN, "replace-cross", 3)]),
        "hf_page_date.html": hf_page(items[20:30], cards=items[20:30]),
        "hf_page_search.html": hf_page(items[30:35], cards=items[30:35], query="inference"),
        "hf_page_cards.html": hf_page(None, cards=items[20:25]),
        "hf_page_challenge.html": CHALLENGE,
        "hf_search.json": json.dumps([item if n % 2 else item["paper"] for n, item in enumerate(items[40:50])],
                                     indent=1, ensure_ascii=False).encode(),
    }
    for name, body in files.items():
        (HERE / name).write_bytes(body)
        print(f"wrote tests/data/{name} ({len(body)} bytes)")


if __name__ == "__main__":
    main()
