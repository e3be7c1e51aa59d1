"""A saved Hugging Face paper search (`GET /api/papers/search?q=...&limit=N`)."""
from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ..models import Paper, SourceMemory
from . import Source, SourceOptions
from .hf_json import parse_items_json


class HfSearchOptions(SourceOptions):
    query: str = Field(min_length=1)
    limit: int = Field(default=50, ge=1, le=120)


class HfSearch(Source):
    """Hugging Face paper search: the papers the search `query` finds, e.g. `speculative decoding`.

    Items come wrapped like Daily Papers (`{"paper": {...}}`) or as flat paper objects; both are read.
    Options: url (default the public search API), query (required), limit (results per poll).
    """

    kind = "hf_search"
    Options = HfSearchOptions
    default_url = "https://huggingface.co/api/papers/search"
    options: HfSearchOptions

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        return self.fetch_parsed(self.url, {"q": self.options.query, "limit": self.options.limit}, memory)

    def parse(self, body: bytes) -> list[Paper]:
        return parse_items_json(body, self.fail, self.name)
