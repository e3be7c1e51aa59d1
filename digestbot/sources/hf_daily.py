"""The Hugging Face daily papers list (`GET /api/daily_papers`)."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import Field

from ..models import Paper, SourceMemory
from . import Source, SourceOptions
from .hf_json import parse_items_json

MAX_PAGES = 50  # a day holds ~30 papers; 50 pages of 100 means the server ignores paging


class HfDailyOptions(SourceOptions):
    period: Literal["day", "week", "month"] = "day"
    limit: int = Field(default=100, ge=1, le=100)
    catch_up_days: int = Field(default=7, ge=1, le=31)


class HfDaily(Source):
    """Hugging Face Daily Papers: the papers the community picked each day.

    Polls today's and yesterday's list (UTC; today's fills up over hours) and, after downtime,
    every missed day since the last success, up to `catch_up_days` back. `period = "week"` or
    `"month"` polls the current and previous week/month windows instead.
    Options: url (default the public API), period, limit (page size, at most 100), catch_up_days.
    """

    kind = "hf_daily"
    Options = HfDailyOptions
    default_url = "https://huggingface.co/api/daily_papers"
    options: HfDailyOptions

    def collect(self, now: datetime, memory: SourceMemory) -> list[Paper]:
        papers: list[Paper] = []
        for window in self.windows(now, memory.last_success):
            papers.extend(self._collect_window(window, memory))
        return papers

    def windows(self, now: datetime, last_success: datetime | None) -> list[dict[str, str]]:
        """The query parameters of every list to poll, oldest first."""
        today = now.astimezone(UTC).date()
        period = self.options.period
        if period == "week":
            return [{"week": _iso_week(today - timedelta(weeks=n))} for n in (1, 0)]
        if period == "month":
            first = today.replace(day=1)
            previous = (first - timedelta(days=1)).replace(day=1)
            return [{"month": d.strftime("%Y-%m")} for d in (previous, first)]
        days_back = 1
        if last_success is not None:
            missed = (today - last_success.astimezone(UTC).date()).days
            days_back = max(1, min(missed, self.options.catch_up_days))
        return [{"date": (today - timedelta(days=n)).isoformat()} for n in range(days_back, -1, -1)]

    def _collect_window(self, window: dict[str, str], memory: SourceMemory | None = None) -> list[Paper]:
        memory = memory or SourceMemory()
        papers: list[Paper] = []
        limit = self.options.limit
        for page in range(MAX_PAGES):
            # A 304 (unchanged page) gives no papers, which also ends the paging of this window.
            batch = self.fetch_parsed(self.url, {**window, "p": page, "limit": limit}, memory)
            papers.extend(batch)
            if len(batch) < limit:
                break
        return papers

    def parse(self, body: bytes) -> list[Paper]:
        return parse_items_json(body, self.fail, self.name)


def _iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"
