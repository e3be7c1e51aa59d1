"""When things happen: send schedules (`instant`, `hourly`, `daily HH:MM`, `weekly DAY HH:MM`, cron,
`every 15m`) and when a source is polled next.

A schedule answers one question for the sender: which is the latest period that has begun by `now`
(`last_period`)? A period is keyed by the *local wall-clock* time of its fire, e.g.
"2026-11-22T08:00", and digests are keyed by (subscription, period key).

Why wall-clock time and not APScheduler's fire instants: APScheduler 3.11's CronTrigger, asked for
"daily 02:30" in Europe/Berlin, fires twice on the autumn switch day (02:30+02:00 and 02:30+01:00),
and `get_next_fire_time` then keeps answering the second 02:30 for every later start time — a loop
over fire times never ends. On the spring switch day it returns the non-existent 02:30+01:00
(= 03:30 CEST). So we evaluate the cron fields on naive local wall-clock time (as if it were UTC,
where every wall-clock minute exists exactly once): a repeated hour maps to a key that already has
its digest (no second send), and a skipped hour's fire becomes due as soon as the clock passes it
(no skipped period). Restarts are harmless for the same reason: the key depends only on the clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .models import KEY_FORMAT
from .sources import SourceOptions

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DURATION = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_LOOKBACKS = (timedelta(hours=2), timedelta(days=2), timedelta(days=9), timedelta(days=400))
HELP = "use instant, hourly, 'daily HH:MM', 'weekly mon HH:MM' or a 5-field cron expression"


@dataclass(frozen=True)
class Period:
    key: str  # local wall-clock time of the fire: "2026-11-22T08:00"
    start: datetime  # the instant (UTC) the local clock first showed that time, or passed it


@dataclass(frozen=True)
class Schedule:
    text: str
    timezone: str
    trigger: BaseTrigger | None  # None: instant; fields evaluated in the zone (for APScheduler jobs)
    wall: BaseTrigger | None = None  # the same fields on naive wall-clock time (see module docstring)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def instant(self) -> bool:
        return self.trigger is None

    def last_period(self, now: datetime) -> Period | None:
        """The latest period whose local fire time the clock has reached by `now` (None: instant)."""
        if self.trigger is None:
            return None
        if isinstance(self.trigger, IntervalTrigger):  # `every N`: periods aligned on the epoch, in UTC
            step = self.trigger.interval.total_seconds()
            start = datetime.fromtimestamp(now.timestamp() // step * step, UTC)
            return Period(start.strftime("%Y-%m-%dT%H:%M:%S"), start)
        assert self.wall is not None
        zone = ZoneInfo(self.timezone)
        local = now.astimezone(zone).replace(tzinfo=UTC)  # wall clock, pretending to be UTC
        fire = _last(self.wall, local)
        if fire is None:
            return None
        return Period(fire.strftime(KEY_FORMAT), min(_instant(fire, zone), now))


def _last(trigger: BaseTrigger, now: datetime) -> datetime | None:
    for lookback in _LOOKBACKS:
        last: datetime | None = None
        fire = _next_fire(trigger, None, now - lookback)
        while fire is not None and fire <= now:
            last, nxt = fire, _next_fire(trigger, fire, fire + timedelta(seconds=1))
            fire = nxt if nxt is None or nxt > fire else None  # guard: never loop on a repeated answer
        if last is not None:
            return last
    return None


def _next_fire(trigger: BaseTrigger, previous: datetime | None, now: datetime) -> datetime | None:
    """APScheduler's answer, typed (APScheduler 3 has no type hints): None when the trigger is done."""
    fire: datetime | None = trigger.get_next_fire_time(previous, now)
    return fire


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """When the local clock reached `wall`: the first of a repeated time, the jump past a skipped one."""
    naive = wall.replace(tzinfo=None)
    while not _exists(naive, zone):  # skipped by a spring-forward switch: walk to the first real minute
        naive += timedelta(minutes=1)
    return naive.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _exists(naive: datetime, zone: ZoneInfo) -> bool:
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


@lru_cache(maxsize=4096)
def parse_schedule(text: str, timezone: str) -> Schedule:
    """Raises ValueError with a message that says what is allowed. Cached: a Schedule never changes, and
    50,000 subscriptions with a few distinct schedules then hold a few Schedules, not 50,000."""
    spec = " ".join(text.lower().split())
    tz = ZoneInfo(timezone)
    if spec == "instant":
        return Schedule(text, timezone, None)
    if spec == "hourly":
        return _cron(text, timezone, minute=0)
    words = spec.split(" ")
    if words[0] == "every" and len(words) == 2 and (m := _DURATION.match(words[1])):
        if int(m.group(1)) == 0:
            raise ValueError(f"{text!r}: the interval must be more than 0")
        return Schedule(text, timezone, IntervalTrigger(**{_UNITS[m.group(2)]: int(m.group(1))}, timezone=tz))
    if words[0] == "daily" and len(words) == 2:
        hour, minute = _clock(words[1], text)
        return _cron(text, timezone, hour=hour, minute=minute)
    if words[0] == "weekly" and len(words) == 3:
        if words[1][:3] not in DAYS:
            raise ValueError(f"{text!r}: unknown day {words[1]!r}; use one of {', '.join(DAYS)}")
        hour, minute = _clock(words[2], text)
        return _cron(text, timezone, day_of_week=words[1][:3], hour=hour, minute=minute)
    if len(words) == 5:
        try:
            return Schedule(text, timezone, CronTrigger.from_crontab(spec, timezone=tz),
                            CronTrigger.from_crontab(spec, timezone="UTC"))
        except ValueError as exc:
            raise ValueError(f"{text!r}: invalid cron expression ({exc})") from None
    raise ValueError(f"{text!r} is not a schedule; {HELP}")


def _cron(text: str, zone: str, **fields: object) -> Schedule:
    return Schedule(text, zone, CronTrigger(**fields, timezone=ZoneInfo(zone)), CronTrigger(**fields, timezone="UTC"))


def _clock(value: str, text: str) -> tuple[int, int]:
    match = _CLOCK.match(value)
    if not match:
        raise ValueError(f"{text!r}: the time must be HH:MM (24-hour), e.g. 08:00")
    return int(match.group(1)), int(match.group(2))


# --- when a source is polled next: `every` counts from the last poll, `cron` is the next fire time ---------
# (`digestbot status` shows it; the daemon runs the same triggers)
def poll_trigger_spec(options: SourceOptions) -> str:
    return options.cron or f"every {options.every}"


def next_poll(options: SourceOptions, last_poll: datetime | None, now: datetime) -> datetime | None:
    """The next poll time; `now` for a source never polled (the daemon polls every source at start);
    None: never (a cron expression of a day that does not exist, e.g. `0 0 30 2 *`)."""
    if last_poll is None:
        return now
    trigger = parse_schedule(poll_trigger_spec(options), "UTC").trigger
    assert trigger is not None  # a poll spec is `every ...` or cron, never instant
    if isinstance(trigger, IntervalTrigger):
        interval: timedelta = trigger.interval
        return last_poll + interval
    # The first fire strictly after the last poll (a poll exactly on a fire time is that fire).
    return _next_fire(trigger, None, last_poll + timedelta(seconds=1))
