"""When a source is polled next: `every` counts from the last poll, `cron` is the next fire time.

`digestbot status` shows it; the scheduler (scheduler.py) runs the same triggers.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from apscheduler.triggers.interval import IntervalTrigger

from .schedule import parse_schedule
from .sources import SourceOptions


def poll_trigger_spec(options: SourceOptions) -> str:
    return options.cron or f"every {options.every}"


def next_poll(options: SourceOptions, last_poll: datetime | None, now: datetime) -> datetime:
    """The next poll time; `now` for a source never polled (the daemon polls every source at start)."""
    if last_poll is None:
        return now
    trigger = parse_schedule(poll_trigger_spec(options), "UTC").trigger
    if isinstance(trigger, IntervalTrigger):
        return last_poll + trigger.interval
    # The first fire strictly after the last poll (a poll exactly on a fire time is that fire).
    return trigger.get_next_fire_time(None, last_poll + timedelta(seconds=1))
