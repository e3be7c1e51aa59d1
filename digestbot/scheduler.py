"""APScheduler 3.x wiring for `digestbot run`: one poll job per source, one send job per schedule.

Job defaults matter (FIELD-NOTES): APScheduler drops a run more than `misfire_grace_time` late (1 s by
default) — a digest must not vanish because the machine was busy, so we allow hours. Sending is
idempotent in our own tables, so a job that runs twice cannot send twice.
"""
from __future__ import annotations

import logging
import signal
from datetime import datetime, timezone
from typing import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from . import pipeline
from .schedule import parse_schedule

log = logging.getLogger(__name__)
JOB_DEFAULTS = {"misfire_grace_time": 6 * 3600, "coalesce": True, "max_instances": 1}


def now() -> datetime:
    return datetime.now(timezone.utc)


def poll_job(ctx: pipeline.Context, name: str) -> None:
    pipeline.poll(ctx, name, now())
    send_job(ctx)


def send_job(ctx: pipeline.Context) -> None:
    result = pipeline.send_due(ctx, now())
    if result.sent or result.failed:
        log.info("sent %d digests, %d failed", len(result.sent), len(result.failed))


def build(ctx: pipeline.Context) -> BlockingScheduler:
    scheduler = BlockingScheduler(job_defaults=JOB_DEFAULTS, timezone=ctx.config.bot.timezone)
    for options in ctx.config.sources:
        spec = options.cron or f"every {options.every}"
        trigger = parse_schedule(spec, "UTC").trigger
        scheduler.add_job(poll_job, trigger, args=(ctx, options.name), id=f"poll:{options.name}",
                          name=f"poll {options.name}", next_run_time=now())
    unique = {(s.text, s.timezone): s for s in ctx.config.schedules.values() if not s.instant}
    for (text, tz), schedule in unique.items():
        scheduler.add_job(send_job, schedule.trigger, args=(ctx,), id=f"send:{text}:{tz}", name=f"send {text} {tz}")
    # Retries of failed sends, and digests whose period came while the bot was down.
    scheduler.add_job(send_job, IntervalTrigger(minutes=5), args=(ctx,), id="send:retries", name="send retries")
    scheduler.add_listener(_on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def _on_job_event(event: JobExecutionEvent) -> None:
    if event.exception is not None:
        log.error("job %s failed: %s", event.job_id, event.exception, exc_info=event.exception)
    else:
        log.warning("job %s missed its run time %s", event.job_id, event.scheduled_run_time)


def serve(ctx: pipeline.Context, on_start: Callable[[BlockingScheduler], None] | None = None) -> None:
    """Run until Ctrl-C or SIGTERM; a running job finishes, nothing half-sent is left behind."""
    scheduler = build(ctx)

    def stop(signum, _frame):
        log.info("received %s; stopping after the running jobs", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    if on_start:
        on_start(scheduler)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
