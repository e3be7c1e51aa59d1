"""Schedules across DST switches and restarts, driven with a fixed clock (no waiting).

The job functions are called directly: `pipeline.send_due(ctx, now)` against a real SQLite store and
the file channel. Each period (keyed by local wall-clock time) gets exactly one digest; every paper is
delivered exactly once; nothing waits past the next period.
"""
from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.models import Paper
from digestbot.schedule import parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
_ids = itertools.count(1)


def context(tmp_path: Path, schedule: str, zone: str = "Europe/Berlin", send_empty: bool = False):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(f"""
[bot]
database = "sqlite:///state.db"

[[subscriptions]]
name = "Decoding"
query = 'decoding'
email = ["a@example.org"]
schedule = "{schedule}"
timezone = "{zone}"
send_empty = {str(send_empty).lower()}
""")
    return App.from_config(config_module.load(path))


def add_paper(ctx, now: datetime) -> str:
    n = next(_ids)
    paper = Paper(title=f"Speculative decoding {n}", abstract="Decoding, faster.", arxiv_id=f"2410.{n:05d}",
                  published=now)
    with ctx.store.write() as w:
        [(pid, stored)] = w.record_papers("test", [paper], now)
        matches = ctx.matcher.match([stored])
        w.record_matches([(pid, m) for m in matches], pipeline._all_targets(ctx.config), now)
    return paper.title


def sweep(ctx, start: datetime, end: datetime, step: timedelta, papers_at: dict[datetime, int] = None):
    """Run send_due every `step` from start to end, adding papers at the given instants."""
    sent = []
    now = start
    while now <= end:
        for _ in range((papers_at or {}).get(now, 0)):
            add_paper(ctx, now)
        for _, _, _, count in pipeline.send_due(ctx, now).sent:
            sent.append((now, count))
        now += step
    return sent


def periods(ctx) -> dict[str, tuple[str, int]]:
    return {row.period: (row.status, row.papers) for row in ctx.store.digests()}


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_apscheduler_cron_fires_twice_on_the_autumn_switch_but_both_fires_share_one_period():
    """Why periods are keyed by wall-clock time: APScheduler 3.11 repeats 02:30 on 25 Oct 2026."""
    trigger = CronTrigger(hour=2, minute=30, timezone=BERLIN)
    first = trigger.get_next_fire_time(None, datetime(2026, 10, 25, 0, 0, tzinfo=BERLIN))
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    assert first.utcoffset() == timedelta(hours=2) and second.utcoffset() == timedelta(hours=1)
    schedule = parse_schedule("daily 02:30", "Europe/Berlin")
    assert schedule.last_period(first).key == schedule.last_period(second).key == "2026-10-25T02:30"


def test_autumn_switch_daily_0230_sends_one_digest_per_day(tmp_path):
    ctx = context(tmp_path, "daily 02:30")
    # Papers before the first 02:30 (00:30 UTC), between the two 02:30s, and after the second one.
    papers_at = {utc(2026, 10, 24, 22, 0): 2, utc(2026, 10, 25, 0, 50): 1, utc(2026, 10, 25, 1, 40): 1}
    sent = sweep(ctx, utc(2026, 10, 24, 22, 0), utc(2026, 10, 26, 3, 0), timedelta(minutes=10), papers_at)
    assert sent == [(utc(2026, 10, 25, 0, 30), 2), (utc(2026, 10, 26, 1, 30), 2)]
    assert periods(ctx) == {"2026-10-25T02:30": ("sent", 2), "2026-10-26T02:30": ("sent", 2)}


def test_autumn_switch_hourly_never_repeats_the_doubled_hour_and_loses_no_paper(tmp_path):
    ctx = context(tmp_path, "hourly")
    start, end = utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 4, 0)
    papers_at = {start + timedelta(minutes=15 * k + 5): 1 for k in range(28)}
    sent = sweep(ctx, start, end, timedelta(minutes=5), papers_at)
    assert sum(count for _, count in sent) == len(papers_at)  # each paper exactly once
    # Local 02:00 happens twice (00:00 and 01:00 UTC): one digest; the papers of the repeated hour go
    # with the 03:00 digest (02:00 UTC).
    assert [now for now, _ in sent] == [utc(2026, 10, 24, h, 0) for h in (22, 23)] + \
        [utc(2026, 10, 25, h, 0) for h in (0, 2, 3, 4)]
    assert [count for _, count in sent] == [4, 4, 4, 8, 4, 4]
    assert list(periods(ctx)) == ["2026-10-25T00:00", "2026-10-25T01:00", "2026-10-25T02:00",
                                  "2026-10-25T03:00", "2026-10-25T04:00", "2026-10-25T05:00"]


def test_spring_switch_daily_0230_still_sends_on_the_day_0230_does_not_exist(tmp_path):
    ctx = context(tmp_path, "daily 02:30")
    papers_at = {utc(2026, 3, 28, 20, 0): 1, utc(2026, 3, 29, 12, 0): 1}
    sent = sweep(ctx, utc(2026, 3, 28, 20, 0), utc(2026, 3, 30, 6, 0), timedelta(minutes=15), papers_at)
    # The clock jumps from 02:00 CET (01:00 UTC) to 03:00 CEST: the period is due at the jump.
    assert sent == [(utc(2026, 3, 29, 1, 0), 1), (utc(2026, 3, 30, 0, 30), 1)]
    assert list(periods(ctx)) == ["2026-03-29T02:30", "2026-03-30T02:30"]


def test_restart_and_repeated_runs_never_send_a_period_twice(tmp_path):
    ctx = context(tmp_path, "weekly mon 08:00")
    add_paper(ctx, utc(2026, 11, 20, 12, 0))
    now = utc(2026, 11, 23, 7, 5)  # Monday 08:05 in Berlin
    assert len(pipeline.send_due(ctx, now).sent) == 1
    again = App.from_config(ctx.config)  # a restarted process: only the database remembers
    assert pipeline.send_due(again, now).sent == []
    assert pipeline.send_due(again, now + timedelta(days=3)).sent == []  # next period not begun yet
    add_paper(again, now + timedelta(hours=1))
    assert pipeline.send_due(again, now + timedelta(days=6, hours=23)).sent == []
    assert len(pipeline.send_due(again, now + timedelta(days=7)).sent) == 1
    assert list(periods(again)) == ["2026-11-23T08:00", "2026-11-30T08:00"]


def test_a_period_missed_while_down_is_sent_at_start_with_its_own_key(tmp_path):
    ctx = context(tmp_path, "daily 08:00", zone="America/New_York")
    add_paper(ctx, utc(2026, 11, 21, 20, 0))
    # Down over the 08:00 (13:00 UTC) fire; back at 18:00 UTC.
    [(name, _, _, count)] = pipeline.send_due(ctx, utc(2026, 11, 22, 18, 0)).sent
    assert count == 1 and list(periods(ctx)) == ["2026-11-22T08:00"]


def test_papers_after_the_fire_wait_for_the_next_period(tmp_path):
    ctx = context(tmp_path, "0 9 * * 1-5", zone="UTC")
    add_paper(ctx, utc(2026, 11, 23, 9, 30))  # Monday, after 09:00
    assert pipeline.send_due(ctx, utc(2026, 11, 23, 12, 0)).sent == []
    assert len(pipeline.send_due(ctx, utc(2026, 11, 24, 9, 0)).sent) == 1


def test_send_empty_sends_a_digest_with_no_papers_once_per_period(tmp_path):
    quiet = context(tmp_path / "a", "daily 08:00", zone="UTC")
    assert pipeline.send_due(quiet, utc(2026, 11, 22, 9, 0)).sent == []
    chatty = context(tmp_path / "b", "daily 08:00", zone="UTC", send_empty=True)
    assert [s[3] for s in pipeline.send_due(chatty, utc(2026, 11, 22, 9, 0)).sent] == [0]
    assert pipeline.send_due(chatty, utc(2026, 11, 22, 10, 0)).sent == []
    [eml] = list((tmp_path / "b" / "outbox").glob("*.eml"))
    assert "No new papers matched this period." in eml.read_text()


@pytest.mark.parametrize("spec", ["every 15m", "every 1h"])
def test_interval_periods_are_aligned_and_stable(spec):
    schedule = parse_schedule(spec, "UTC")
    a = schedule.last_period(utc(2026, 11, 22, 10, 7))
    assert a == schedule.last_period(utc(2026, 11, 22, 10, 14, 59)) and a.start <= utc(2026, 11, 22, 10, 7)
