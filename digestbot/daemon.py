"""APScheduler 3.x wiring for `digestbot run`: one poll job per source, one send job per schedule,
a watcher that applies config edits without a restart, and a heartbeat in the database (`Pulse`).

Job defaults matter: APScheduler drops a run more than `misfire_grace_time` late (1 s by
default) — a digest must not vanish because the machine was busy, so we allow hours. Sending is
idempotent in our own tables, so a job that runs twice cannot send twice. Jobs run in threads, and
`max_instances` holds per job only: the poll jobs and the send jobs all call pipeline.send_due, which
runs one pass at a time (a second waits for the first).
"""
from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from . import alerts, pipeline
from . import config as config_module
from .errors import ConfigError, StoreError
from .schedule import parse_schedule
from .store import Heartbeat

log = logging.getLogger(__name__)
JOB_DEFAULTS = {"misfire_grace_time": 6 * 3600, "coalesce": True, "max_instances": 1}
WATCH_SECONDS = 5
HEARTBEAT_SECONDS = 30  # /healthz and `digestbot status` show the newest beat's age: well over this is a dead daemon
# A daemon that does not lead tries to take the poll leader lock this often (and at each of its poll jobs):
# a leader that stopped is replaced within LEAD_SECONDS of its lock being freed (at once when it is killed,
# ~25 s of TCP keepalives when its machine vanishes: store/leader.py).
LEAD_SECONDS = 20


def now() -> datetime:
    return datetime.now(UTC)


class Live:
    """The running context, replaced as a whole when the config file changes and still validates."""

    def __init__(self, ctx: pipeline.Context, rebuild: Callable[[config_module.Config], pipeline.Context], *,
                 send: bool = True):
        self.ctx, self.rebuild = ctx, rebuild
        self.send = send  # False (`run --no-send`): poll and record on schedule, never send
        self.seen = _fingerprint(ctx.config.path)
        # Sources whose latest poll found this machine's clock wrong: no send job acts on that clock
        # (it would open digests of periods that have not come) until a poll of each agrees again.
        self.clock_wrong: set[str] = set()
        self.lead: Lead | None = None  # set by `serve`: whether this daemon polls (None: it always does)

    def reload_if_changed(self, scheduler: BaseScheduler) -> bool:
        fingerprint = _fingerprint(self.ctx.config.path)
        if fingerprint == self.seen:
            return False
        self.seen = fingerprint  # report a bad edit once, not every few seconds
        try:
            config = config_module.load(self.ctx.config.path)
            moved = config.database_url != self.ctx.config.database_url  # database_env may name a missing variable
        except ConfigError as exc:
            log.error("config change NOT applied; still running the last good config:\n%s", "\n".join(exc.problems))
            return False
        if moved:
            log.warning("bot.database changed: restart digestbot to use the new database; keeping the old one")
        self.ctx = self.rebuild(config)
        schedule_jobs(scheduler, self)
        log.info("config reloaded: %d sources, %d subscriptions", len(config.sources), len(config.subscriptions))
        return True


def _fingerprint(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Pulse:
    """This process's heartbeat row (host, pid): written at start and every HEARTBEAT_SECONDS, deleted on
    a clean stop. A beat that fails (the database busy, gone) is logged and skipped: a missed beat only
    makes the age grow, which is what monitors watch; it must never stop the daemon."""

    def __init__(self, live: Live):
        self.live, self.host, self.pid, self.started_at = live, socket.gethostname(), os.getpid(), now()
        # A beat in flight in a job thread must not write the row again after `stop` deleted it.
        self.lock, self.stopped = threading.Lock(), False

    def beat(self) -> None:
        with self.lock:
            if self.stopped:
                return
            try:
                self.live.ctx.store.beat(self.host, self.pid, self.started_at, now())
            except StoreError as exc:
                log.warning("heartbeat not written (the next one is in %d s): %s", HEARTBEAT_SECONDS, exc)

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            try:
                self.live.ctx.store.forget_heartbeat(self.host, self.pid)
            except StoreError as exc:
                log.warning("heartbeat row of pid %d on %s not removed (it will age): %s", self.pid, self.host, exc)


class Lead:
    """This daemon's part when several share a database (store/leader.py): the first to take the poll leader
    lock leads, keeps it while it runs, and is the only one whose poll jobs poll and whose send passes open
    digests. The others (followers) only claim and send, and try to take the lock at each poll job and every
    LEAD_SECONDS; the one that gets it takes over, and polls every source at once."""

    def __init__(self, live: Live, scheduler: BaseScheduler):
        self.live, self.scheduler = live, scheduler
        self.leader = live.ctx.store.leadership()
        self.leader.managed, self.leader.role = True, "daemon"  # its send passes never take the lock themselves
        self.lock = threading.Lock()

    def start(self) -> None:
        if self.leader.try_acquire():
            log.info("this daemon leads: it polls the sources and opens the digests (other digestbot processes on "
                     "this database only send)")
            return
        holder = self.leader.holder()
        log.info("another digestbot process leads%s: it polls; this daemon only sends, and takes over polling if "
                 "that process stops (checked every %d s)", f" ({holder})" if holder else "", LEAD_SECONDS)

    def polls(self, source: str | None = None) -> bool:
        """Whether this daemon leads now: if it does not, it tries to take the lock (and, when it gets it,
        runs every poll job but `source`'s at once: `source`'s own job is the one asking)."""
        with self.lock:
            if self.leader.held:
                return self.leader.check()  # a broken lock connection: it steps down (logged by check)
            if not self.leader.try_acquire():
                return False
            log.warning("took over polling from a stopped leader: this daemon now polls the sources and opens the "
                        "digests; polling every source now")
            for job in self.scheduler.get_jobs():
                if job.id.startswith("poll:") and job.id != f"poll:{source}":
                    job.modify(next_run_time=now())
            if self.live.send:  # the digests the stopped leader had claimed are due again once their lease ends
                lease = timedelta(seconds=self.live.ctx.config.bot.send_lease + 1)
                self.scheduler.add_job(send_job, DateTrigger(now() + lease), args=(self.live,), id="lead:send",
                                       name="send what the stopped leader had claimed", replace_existing=True)
            return True

    def stop(self) -> None:
        self.leader.release()


def poll_job(live: Live, name: str) -> None:
    if live.lead is not None and not live.lead.polls(name):
        log.debug("%s: not polled here: another digestbot process leads and polls it", name)
        if live.send:
            send_job(live)  # claim and send what the leader opened; this process never opens
        return
    result = pipeline.poll(live.ctx, name, now(), send=live.send)
    if not live.send:
        return
    if result.clock_wrong:
        live.clock_wrong.add(name)
        return  # logged by poll; a send would open digests by a clock known to be wrong
    if result.error is None:
        live.clock_wrong.discard(name)
    send_job(live)


def send_job(live: Live) -> None:
    if live.clock_wrong:
        log.error("not sending: the latest poll of %s found this machine's clock wrong; sending resumes once "
                  "a poll agrees with the servers' clocks", ", ".join(sorted(live.clock_wrong)))
        return
    result = pipeline.send_due(live.ctx, now())
    if result.sent or result.failed:
        log.info("sent %d digests, %d failed", len(result.sent), len(result.failed))


def schedule_jobs(scheduler: BaseScheduler, live: Live) -> None:
    """(Re)create the poll and send jobs for the current config; keeps the watcher."""
    for job in scheduler.get_jobs():
        if job.id.startswith(("poll:", "send:")):
            job.remove()
    config = live.ctx.config
    for options in config.sources:
        trigger = parse_schedule(options.cron or f"every {options.every}", "UTC").trigger
        scheduler.add_job(poll_job, trigger, args=(live, options.name), id=f"poll:{options.name}",
                          name=f"poll {options.name}", next_run_time=now())
    if not live.send:
        return
    unique = {(s.text, s.timezone): s for s in config.schedules.values() if not s.instant}
    for (text, tz), schedule in unique.items():
        scheduler.add_job(send_job, schedule.trigger, args=(live,), id=f"send:{text}:{tz}", name=f"send {text} {tz}")
    # Retries of failed sends, and digests whose period came while the bot was down.
    scheduler.add_job(send_job, IntervalTrigger(minutes=5), args=(live,), id="send:retries", name="send retries")


def build(live: Live, pulse: Pulse | None = None) -> BlockingScheduler:
    scheduler = BlockingScheduler(job_defaults=JOB_DEFAULTS, timezone=live.ctx.config.bot.timezone)
    schedule_jobs(scheduler, live)
    scheduler.add_job(live.reload_if_changed, IntervalTrigger(seconds=WATCH_SECONDS), args=(scheduler,),
                      id="config:watch", name="watch the config file")
    if pulse is not None:
        scheduler.add_job(pulse.beat, IntervalTrigger(seconds=HEARTBEAT_SECONDS), id="heartbeat",
                          name="write this daemon's heartbeat")
    scheduler.add_listener(_on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    return scheduler


def lead(live: Live, scheduler: BaseScheduler) -> Lead:
    """Take part in the poll lead (see Lead): try to lead now, and keep trying every LEAD_SECONDS."""
    live.lead = Lead(live, scheduler)
    live.lead.start()
    scheduler.add_job(live.lead.polls, IntervalTrigger(seconds=LEAD_SECONDS), id="lead",
                      name="take over polling when the leader stops")
    return live.lead


def _on_job_event(event: JobExecutionEvent) -> None:
    if event.exception is not None:
        log.error("job %s failed: %s", event.job_id, event.exception, exc_info=event.exception)
    else:
        log.warning("job %s missed its run time %s", event.job_id, event.scheduled_run_time)


def serve(live: Live) -> None:
    """Run until Ctrl-C or SIGTERM; a running job finishes, nothing half-sent is left behind. The
    heartbeat row is written before the first job and removed when the daemon stops."""
    pulse = Pulse(live)
    # Before the first beat: a row of this host left by a daemon that is gone is a crash to tell (alerts.py).
    alerts.daemon_started(live.ctx.config, live.ctx.store, Heartbeat(pulse.host, pulse.pid, pulse.started_at,
                                                                     pulse.started_at))
    pulse.beat()
    scheduler = build(live, pulse)
    leading = lead(live, scheduler)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping after the running jobs", signal.Signals(signum).name)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    jobs = [job.id for job in scheduler.get_jobs()]
    # One line for what APScheduler would say in one per job (its loggers are at WARNING unless -v).
    log.info("daemon started (pid %d): %d poll jobs, %d send schedules, heartbeat every %d s",
             pulse.pid, sum(j.startswith("poll:") for j in jobs), sum(j.startswith("send:") for j in jobs) - 1,
             HEARTBEAT_SECONDS)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        log.info("interrupted; stopping")
    finally:
        leading.stop()
        pulse.stop()
