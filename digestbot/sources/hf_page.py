"""A Hugging Face papers web page, read from the JSON it embeds (the API is the better source)."""
from __future__ import annotations

import json
import logging
from datetime import datetime

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ..models import Paper, SourceMemory, arxiv_id_of
from . import Source, decoded, read_items
from .hf_json import HF_PAPER_URL, paper_from_item

log = logging.getLogger(__name__)
PROPS_KEYS = ("dailyPapers", "searchResults", "papers")


class HfPage(Source):
    """A Hugging Face papers page: `/papers/date/YYYY-MM-DD`, `/papers/week/YYYY-Www`, `/papers/trending`,
    `/papers?q=...`.

    Reads the papers from the page's embedded `DailyPapers` data; only when that is missing does it
    fall back to the visible cards (titles and links only). A page with neither (a bot challenge, a
    redesign) is an error: use `hf_daily` or `hf_search`, which read the dependable JSON API.
    Options: url (required: the page address).
    """

    kind = "hf_page"
    default_url = "https://huggingface.co/papers/trending"

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        return self.fetch_parsed(self.url, None, memory)

    def parse(self, body: bytes) -> list[Paper]:
        tree = HTMLParser(decoded(body, self.fail, "a Hugging Face papers page"))
        node = tree.css_first('[data-target="DailyPapers"][data-props]')
        if node is not None:
            return self._from_props(node.attributes.get("data-props") or "")
        papers = self._from_cards(tree)
        if not papers:
            raise self.fail("no DailyPapers data and no paper cards on the page (a bot-challenge page or a "
                            "redesign?); use the hf_daily or hf_search kind, which read the JSON API")
        log.warning("%s: no embedded DailyPapers data; read %d titles from the visible cards",
                    self.name, len(papers))
        return papers

    def _from_props(self, raw: str) -> list[Paper]:
        try:
            props = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise self.fail(f"the page's DailyPapers data-props is not valid JSON ({exc})") from None
        if not isinstance(props, dict):
            raise self.fail("the page's DailyPapers data-props is not a JSON object")
        # A search page (`/papers?q=`) carries its `query` and `searchResults` next to the daily list.
        keys = ("searchResults", *PROPS_KEYS) if props.get("query") else PROPS_KEYS
        key = next((k for k in keys if isinstance(props.get(k), list)), None)
        if key is None:
            raise self.fail(f"the page's DailyPapers data has none of {', '.join(PROPS_KEYS)} "
                            f"(keys: {', '.join(sorted(props))[:200]}); the page layout changed?")
        return read_items(self.name, props[key], lambda item, i: paper_from_item(item, i, self.fail, self.name))

    def _from_cards(self, tree: HTMLParser) -> list[Paper]:
        papers: dict[str, Paper] = {}
        for link in tree.css("article h3 a[href], h3 a[href^='/papers/']"):
            href = link.attributes.get("href") or ""
            arxiv_id = arxiv_id_of(href.rstrip("/").rsplit("/papers/", 1)[-1]) if "/papers/" in href else None
            title = link.text(deep=True, separator=" ").strip()
            if arxiv_id and title:
                papers.setdefault(arxiv_id, Paper(title=title, arxiv_id=arxiv_id, url=HF_PAPER_URL.format(arxiv_id),
                                                  sources=(self.name,)))
        return list(papers.values())
