"""Schedules: `instant`, `hourly`, `daily HH:MM`, `weekly DAY HH:MM`, a cron expression, `every 15m`.

A schedule answers two questions for the sender: when did it last fire (`last_fire`), and which
period does a fire time belong to (`period_key`). Digests are keyed by (subscription, period key),
where the key is the *local wall-clock* time of the fire, so a DST switch that repeats an hour, or a
restart, maps to the same key and cannot send one period twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_LOOKBACKS = (timedelta(hours=2), timedelta(days=2), timedelta(days=9), timedelta(days=400))
HELP = "use instant, hourly, 'daily HH:MM', 'weekly mon HH:MM' or a 5-field cron expression"


@dataclass(frozen=True)
class Schedule:
    text: str
    timezone: str
    trigger: BaseTrigger | None  # None: instant

    @property
    def instant(self) -> bool:
        return self.trigger is None

    def last_fire(self, now: datetime) -> datetime | None:
        """The latest fire time at or before `now` (None for instant schedules)."""
        if self.trigger is None:
            return None
        for lookback in _LOOKBACKS:
            last, fire = None, self.trigger.get_next_fire_time(None, now - lookback)
            while fire is not None and fire <= now:
                last, fire = fire, self.trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
            if last is not None:
                return last
        return None

    def period_key(self, fire: datetime) -> str:
        return fire.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%dT%H:%M")


def parse_schedule(text: str, timezone: str) -> Schedule:
    """Raises ValueError with a message that says what is allowed."""
    spec = " ".join(text.lower().split())
    tz = ZoneInfo(timezone)
    if spec == "instant":
        return Schedule(text, timezone, None)
    if spec == "hourly":
        return Schedule(text, timezone, CronTrigger(minute=0, timezone=tz))
    words = spec.split(" ")
    if words[0] == "every" and len(words) == 2 and (m := _DURATION.match(words[1])):
        if int(m.group(1)) == 0:
            raise ValueError(f"{text!r}: the interval must be more than 0")
        return Schedule(text, timezone, IntervalTrigger(**{_UNITS[m.group(2)]: int(m.group(1))}, timezone=tz))
    if words[0] == "daily" and len(words) == 2:
        hour, minute = _clock(words[1], text)
        return Schedule(text, timezone, CronTrigger(hour=hour, minute=minute, timezone=tz))
    if words[0] == "weekly" and len(words) == 3:
        if words[1][:3] not in DAYS:
            raise ValueError(f"{text!r}: unknown day {words[1]!r}; use one of {', '.join(DAYS)}")
        hour, minute = _clock(words[2], text)
        return Schedule(text, timezone, CronTrigger(day_of_week=words[1][:3], hour=hour, minute=minute, timezone=tz))
    if len(words) == 5:
        try:
            return Schedule(text, timezone, CronTrigger.from_crontab(spec, timezone=tz))
        except ValueError as exc:
            raise ValueError(f"{text!r}: invalid cron expression ({exc})") from None
    raise ValueError(f"{text!r} is not a schedule; {HELP}")


def _clock(value: str, text: str) -> tuple[int, int]:
    match = _CLOCK.match(value)
    if not match:
        raise ValueError(f"{text!r}: the time must be HH:MM (24-hour), e.g. 08:00")
    return int(match.group(1)), int(match.group(2))
