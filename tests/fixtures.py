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
