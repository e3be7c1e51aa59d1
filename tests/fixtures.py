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
    sighting, so both `publishedAt` fields are moved to `published` (default: today, UTC):
    top-level `publishedAt` and `paper.submittedOnDailyAt` become that day at 00:00Z and
    `paper.publishedAt` that day at its original time of day. A datetime sets both to that instant.
    """
    items = copy.deepcopy(list(_daily_papers()[:count]))
    when = published if published is not None else datetime.now(UTC).date()
    for item in items:
        if isinstance(when, datetime):
            stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            day_stamp = paper_stamp = stamp
        else:
            day_stamp = f"{when.isoformat()}T00:00:00.000Z"
            paper_stamp = when.isoformat() + item["paper"]["publishedAt"][10:]  # keep the time of day
        item["publishedAt"] = day_stamp
        item["paper"]["publishedAt"] = paper_stamp
        item["paper"]["submittedOnDailyAt"] = day_stamp
    return items
