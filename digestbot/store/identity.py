"""Paper identity: finding the stored row a sighting belongs to, and merging it in.

Pure functions over stored rows (anything with the `paper` table's columns as attributes), so that the
rules can be read in one place; store.Writer.record_papers drives them inside its transaction.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from ..models import Paper


class Row(Protocol):
    """A stored paper: tables.PaperRow, not imported (these rules need no SQLModel). Attributes, not
    properties: `merge_into` writes them."""
    id: int | None
    arxiv_id: str | None
    slug: str
    abstract: str
    authors: str
    published: datetime | None
    url: str | None
    upvotes: int
    ai_summary: str | None
    ai_keywords: str
    github: str | None
    project_page: str | None
    sources: str
    updated: datetime


class PaperIndex:
    """Looks a paper up among stored rows: by arXiv id, else by title slug.

    A slug only joins papers when at most one side has an arXiv id: two papers with the same title but
    different ids (a common title like "Attention Is All You Need" reused) stay two papers.
    """

    def __init__(self, rows: Iterable[Row]):
        self.by_id: dict[str, Row] = {}
        self.by_slug: dict[str, list[Row]] = {}
        for row in rows:
            self.add(row)

    def add(self, row: Row) -> None:
        if row.arxiv_id:
            self.by_id[row.arxiv_id] = row
        same = self.by_slug.setdefault(row.slug, [])
        if row not in same:
            same.append(row)

    def find(self, paper: Paper) -> Row | None:
        if paper.arxiv_id and paper.arxiv_id in self.by_id:
            return self.by_id[paper.arxiv_id]
        candidates = self.by_slug.get(paper.slug, [])
        if paper.arxiv_id:
            candidates = [r for r in candidates if not r.arxiv_id]
        # Prefer a row with an id (the best-known version of the paper), then the oldest.
        return min(candidates, key=lambda r: (r.arxiv_id is None, r.id or 0), default=None)


def merge_into(row: Row, paper: Paper, now: datetime) -> None:
    """Merge what a source says now into the stored paper; never makes it new again."""
    row.arxiv_id = row.arxiv_id or paper.arxiv_id
    row.abstract = paper.abstract if len(paper.abstract) > len(row.abstract) else row.abstract
    if paper.authors:
        row.authors = json.dumps(list(paper.authors))
    row.published = row.published or paper.published
    row.url = row.url or paper.url
    row.upvotes = max(row.upvotes, paper.upvotes)
    row.ai_summary = paper.ai_summary or row.ai_summary
    if paper.ai_keywords:
        row.ai_keywords = json.dumps(list(dict.fromkeys([*json.loads(row.ai_keywords), *paper.ai_keywords])))
    row.github = paper.github or row.github
    row.project_page = paper.project_page or row.project_page
    row.sources = json.dumps(sorted({*json.loads(row.sources), *paper.sources}))
    row.updated = now
