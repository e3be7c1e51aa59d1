"""Alerts, not silence (issue 20, point 4): `[alerts]` tells an admin, by mail (aiosmtpd) and Slack (the
suite's Slack server), when a source fails N polls in a row or stays quiet for longer than usual for it,
when digests fail for good, and when the daemon restarts after a crash; once, then once "recovered";
through the digest ledger, so an alert waits out an SMTP server that is down.

Time is driven by passing `now` to the real pipeline (App.run_once(at=...)) and to alerts.check, as the
clock tests do; the daemon test runs the real `digestbot run` and kills it with SIGKILL.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures import daily_items

from digestbot import alerts
from digestbot import config as config_module
from digestbot.app import App
from digestbot.errors import ConfigError
from digestbot.http import Http
from digestbot.store import ALERTS, AlertBook, DigestStatus, Store

OPS = "ops@example.org"
SLACK_ENV = "ALERTS_TEST_SLACK_TOKEN"


def write_config(tmp: Path, *, hf_url: str, smtp_port: int, slack_url: str = "", alerts_toml: str = "",
                 sources: tuple[str, ...] = ("hf",)) -> Path:
    slack = f'[slack]\ntoken_env = "{SLACK_ENV}"\nbase_url = "{slack_url}"\nmin_interval = 0\n' if slack_url else ""
    sources_toml = "".join(f'\n[[sources]]\nname = "{name}"\nkind = "hf_search"\nurl = "{hf_url}/search"\n'
                           f'query = "inference"\n' for name in sources)
    path = tmp / "config.toml"
    path.write_text(f"""
[bot]
database = "sqlite:///bot.db"

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Paper Digest <digest@example.org>"
timeout = 5

{slack}
[alerts]
email = ["{OPS}"]
{alerts_toml or "failed_polls = 3"}
{sources_toml}
[[subscriptions]]
name = "everyone"
query = "inference"
email = ["reader@example.org"]
schedule = "instant"
""", encoding="utf-8")
    return path


def app_for(path: Path) -> App:
    # no backoff between HTTP retries; no clock check (the tests poll as of shifted times)
    return App.from_config(path, http=Http(sleep=lambda s: None, backoff=0.01, timeout=5, clock_tolerance=None))


def ops_mail(smtp) -> list:
    return [r.message for r in smtp.received if OPS in r.rcpt_tos]


class Listing:
    """/search: a 500 while `failing`, else fresh papers."""

    def __init__(self, server) -> None:
        self.failing = True
        self.items = daily_items(4, published=datetime.now(UTC))
        server.route("/search", lambda request: (500, {}, "boom") if self.failing else (200, {}, self.items))


def test_a_failing_source_alerts_once_by_mail_and_slack_then_once_recovered(tmp_path, http_server, smtp_server,
                                                                             slack_server, monkeypatch):
    monkeypatch.setenv(SLACK_ENV, slack_server.token)
    listing = Listing(http_server)
    path = write_config(tmp_path, hf_url=http_server.url, smtp_port=smtp_server.port, slack_url=slack_server.base_url,
                        alerts_toml='slack = "#ops"\nfailed_polls = 3')
    start = datetime.now(UTC)
    with app_for(path) as app:
        for hour in (0, 1):
            [poll], _ = app.run_once(start + timedelta(hours=hour))
            assert poll.error is not None
        assert ops_mail(smtp_server) == [] and slack_server.posts == []  # two failures are no alert yet

        app.run_once(start + timedelta(hours=2))  # the third in a row
        [alert] = ops_mail(smtp_server)
        assert alert["Subject"] == "digestbot alert: source hf failed 3 polls in a row"
        body = alert.get_content()
        for part in ("Source 'hf' failed its last 3 polls", "never been polled successfully", "500",
                     "digestbot sources check hf"):
            assert part in body, part
        [post] = slack_server.posts
        assert post["channel"] == "#ops" and "source hf failed 3 polls in a row" in post["text"]

        for hour in (3, 4, 5):  # more failures: no second alert
            app.run_once(start + timedelta(hours=hour))
        assert len(ops_mail(smtp_server)) == 1 and len(slack_server.posts) == 1

        listing.failing = False
        [poll], _ = app.run_once(start + timedelta(hours=6))
        assert poll.error is None
        alert_mail = ops_mail(smtp_server)
        assert len(alert_mail) == 2 and len(slack_server.posts) == 2
        assert alert_mail[1]["Subject"] == "digestbot recovered: source hf is polled successfully again"
        assert "hf is polled successfully again" in slack_server.posts[1]["text"]
        app.run_once(start + timedelta(hours=7))
        assert len(ops_mail(smtp_server)) == 2  # one recovery
        # the alerts are ledger rows: counted, sent once each (2 messages x 2 targets)
        ledger = [d for d in app.store.digests() if d.subscription_id == ALERTS]
        assert sorted((d.channel, d.status) for d in ledger) == [("email", DigestStatus.SENT)] * 2 + \
            [("slack", DigestStatus.SENT)] * 2


def test_a_problem_back_the_same_day_is_not_told_twice(tmp_path, http_server, smtp_server):
    listing = Listing(http_server)
    path = write_config(tmp_path, hf_url=http_server.url, smtp_port=smtp_server.port, alerts_toml="failed_polls = 1")
    start = datetime(2031, 5, 6, 6, 0, tzinfo=UTC)  # a Tuesday morning: every step below is that day
    with app_for(path) as app:
        app.run_once(start)
        listing.failing = False
        app.run_once(start + timedelta(hours=1))
        assert [m["Subject"].split(":")[0] for m in ops_mail(smtp_server)] == ["digestbot alert",
                                                                                "digestbot recovered"]
        listing.failing = True
        app.run_once(start + timedelta(hours=2))  # failing again the same day: no second alert ...
        listing.failing = False
        app.run_once(start + timedelta(hours=3))  # ... and so no recovery of it either
        assert len(ops_mail(smtp_server)) == 2
        listing.failing = True
        app.run_once(start + timedelta(days=1))  # the next day it is told again
        assert [m["Subject"] for m in ops_mail(smtp_server)][2] == "digestbot alert: source hf failed 1 poll in a row"


def test_an_alert_waits_out_an_smtp_server_that_is_down(tmp_path, http_server, smtp_server):
    Listing(http_server)
    path = write_config(tmp_path, hf_url=http_server.url, smtp_port=smtp_server.port, alerts_toml="failed_polls = 1")
    smtp_server.stop()
    start = datetime.now(UTC)
    with app_for(path) as app:
        _, sends = app.run_once(start)
        assert sends.failed and sends.failed[0][0] == "alerts"
        [queued] = [d for d in app.store.digests() if d.subscription_id == ALERTS]
        assert queued.status == DigestStatus.PENDING and queued.attempts == 1  # kept for a retry
        smtp_server.start()
        app.run_once(start + timedelta(minutes=30))  # the source still fails: the same alert, not a new one
        [alert] = ops_mail(smtp_server)
        assert alert["Subject"] == "digestbot alert: source hf failed 1 poll in a row"  # the text queued first
        app.run_once(start + timedelta(hours=2))
        assert len(ops_mail(smtp_server)) == 1
        [sent] = [d for d in app.store.digests() if d.subscription_id == ALERTS]
        assert sent.status == DigestStatus.SENT


def test_digests_that_fail_for_good_alert_once(tmp_path, http_server, smtp_server):
    listing = Listing(http_server)
    listing.failing = False
    smtp_server.fail_rcpt["reader@example.org"] = "550 5.1.1 no such user"
    path = write_config(tmp_path, hf_url=http_server.url, smtp_port=smtp_server.port)
    start = datetime.now(UTC)
    with app_for(path) as app:
        _, sends = app.run_once(start)
        assert [who for who, _, _ in sends.failed] == ["everyone"]
        [alert] = ops_mail(smtp_server)  # sent in the same run, right after the failure
        assert alert["Subject"] == "digestbot alert: 1 digest failed for good"
        body = alert.get_content()
        assert "550" in body and "digestbot retry --failed" in body
        listing.items = daily_items(8, published=start)[4:]  # more papers, failing again
        app.run_once(start + timedelta(hours=1))
        assert len(ops_mail(smtp_server)) == 1


# --- a source's usual gaps, learned from its history ----------------------------------------------------

MONDAY = datetime(2031, 3, 3, 20, 0, tzinfo=UTC)  # arXiv-like announcements at 20:00, Monday to Friday


def test_a_weekday_source_is_not_quiet_at_the_weekend_but_after_its_usual_gap_times_the_factor(tmp_path):
    path = write_config(tmp_path, hf_url="http://127.0.0.1:9", smtp_port=25, sources=("arxiv", "daily"),
                        alerts_toml="quiet_factor = 1.5")
    config = config_module.load(path)
    with App.from_config(config) as app:
        store = app.store
        for day in range(19):  # three weeks up to Friday the 21st
            at = MONDAY + timedelta(days=day)
            with store.write() as w:
                if at.weekday() < 5:
                    w.source_polled("arxiv", at, seen=10, new=10)
                w.source_polled("daily", at, seen=10, new=10)  # this one lists something every day

        def quiet_at(at: datetime) -> set[str]:
            with store.write() as w:  # a successful poll that found nothing new
                w.source_polled("arxiv", at, seen=10, new=0)
                w.source_polled("daily", at, seen=10, new=0)
            alerts.check(config, store, at)
            return {key.partition(":")[2] for key, a in AlertBook(store).alerts().items() if a.open}

        friday = MONDAY + timedelta(days=18)
        assert alerts.usual_gap(AlertBook(store).news(["arxiv"], MONDAY)["arxiv"], friday) == timedelta(hours=72)
        assert quiet_at(friday + timedelta(hours=24)) == set()  # Saturday evening: nothing yet
        # Sunday 09:00: 37 h; "daily" usually lists within 24 h (x 1.5 = 36 h), arXiv never at weekends
        assert quiet_at(friday + timedelta(hours=37)) == {"daily"}
        assert quiet_at(friday + timedelta(hours=100)) == {"daily"}  # Tuesday: arXiv usually had Monday's by now
        assert quiet_at(friday + timedelta(hours=109)) == {"daily", "arxiv"}  # past 72 h x 1.5 = 108 h
        [message] = [AlertBook(store).message(d.period) for d in store.digests()
                     if d.subscription_id == ALERTS and "arxiv" in d.period]
        assert message is not None and "usual longest gap is 72 hours" in message.text
        assert "alerts come after 108 hours" in message.text


def test_with_too_little_history_three_days_stand_for_the_usual_gap():
    observed = alerts.Observed(sources=(alerts.SourceView("new", 0, MONDAY + timedelta(hours=71), None,
                                                          (MONDAY - timedelta(days=2), MONDAY)),))
    settings = alerts.Settings(quiet_factor=1.5, min_quiet=timedelta(hours=24))
    assert alerts.problems(observed, settings, MONDAY + timedelta(hours=71)) == []
    later = alerts.Observed(sources=(alerts.SourceView("new", 0, MONDAY + timedelta(hours=73), None,
                                                       (MONDAY - timedelta(days=2), MONDAY)),))
    [quiet] = alerts.problems(later, settings, MONDAY + timedelta(hours=73))
    assert quiet.key == "source-quiet:new" and "too little history" in quiet.text


def test_a_quiet_source_is_not_alerted_before_a_poll_confirms_it():
    """A daemon that was down for a week: its sources look quiet until their first poll; not an alert."""
    news = tuple(MONDAY + timedelta(days=d) for d in range(21))
    stale = alerts.Observed(sources=(alerts.SourceView("hf", 0, news[-1], None, news),))
    assert alerts.problems(stale, alerts.Settings(), news[-1] + timedelta(days=7)) == []


# --- a daemon that crashed -----------------------------------------------------------------------------

def wait_for(condition, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_daemon_killed_and_restarted_tells_of_the_crash(tmp_path, http_server, smtp_server):
    listing = Listing(http_server)
    listing.failing = False
    path = write_config(tmp_path, hf_url=http_server.url, smtp_port=smtp_server.port)
    base = [sys.executable, "-m", "digestbot", "-c", str(path)]
    command = [*base, "run", "--send-backlog"]  # a new database's first poll sends too (the papers to wait for)
    assert subprocess.run([*base, "init"], capture_output=True, timeout=60).returncode == 0
    store = Store(f"sqlite:///{tmp_path / 'bot.db'}")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: store.heartbeats() and smtp_server.received, first)  # it runs, and sent the papers
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert [b.pid for b in store.heartbeats()] == [first.pid]  # left behind
    assert ops_mail(smtp_server) == []

    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: ops_mail(smtp_server), second)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    [alert] = ops_mail(smtp_server)
    assert alert["Subject"].startswith("digestbot alert: the daemon on ") and "restarted after a crash" in \
        alert["Subject"]
    assert f"pid {first.pid}" in alert.get_content() and f"pid {second.pid}" in alert.get_content()
    assert store.heartbeats() == []  # the crashed one's row went at the restart, the second stopped cleanly
    assert second.returncode == 0, err


def test_crashed_daemons_are_this_hosts_rows_of_processes_that_are_gone():
    from digestbot.store import Heartbeat

    now = datetime.now(UTC)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    rows = [Heartbeat("here", gone.pid, now, now), Heartbeat("here", os.getppid(), now, now),
            Heartbeat("elsewhere", gone.pid, now, now), Heartbeat("here", os.getpid(), now - timedelta(hours=1), now)]
    assert alerts.crashed_daemons(rows, "here", os.getpid(), now) == [rows[0], rows[3]]


# --- the config ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("section", "message"), [
    ("[alerts]\nfailed_polls = 2\n", "alerts need a recipient"),
    ('[alerts]\nslack = "#ops"\n', "alerts to Slack need a [slack] section"),
    ('[alerts]\nemail = ["not an address"]\n', "not an email address"),
    ('[alerts]\nemail = ["ops@example.org"]\nquiet_factor = 0.5\n', "greater than or equal to 1"),
    ('[alerts]\nemail = ["ops@example.org"]\nfailed_pols = 2\n', "unknown key"),
])
def test_the_alerts_section_is_validated_with_file_and_line(tmp_path, section, message):
    path = tmp_path / "config.toml"
    path.write_text('[email]\nsender = "d@example.org"\n\n' + section, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    assert message in str(caught.value) and f"{path}:" in str(caught.value)


def test_one_slack_channel_or_a_list_and_one_address_read_as_lists(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[email]\nsender = "d@example.org"\n[slack]\n[alerts]\nemail = "ops@example.org"\n'
                    'slack = "#ops"\n', encoding="utf-8")
    alerting = config_module.load(path).alerts
    assert alerting is not None and alerting.targets() == [("email", "ops@example.org"), ("slack", "#ops")]
    assert (alerting.failed_polls, alerting.quiet_factor, alerting.min_quiet_hours) == (3, 1.5, 24.0)


def test_an_upgraded_database_knows_its_sources_history_from_their_papers(tmp_path):
    """Migration 0007 seeds source_news from the papers' first sightings: gaps are usual from the first day."""
    from alembic import command

    from digestbot.models import Paper
    from digestbot.store.upkeep import alembic_config

    store = Store(f"sqlite:///{tmp_path / 'bot.db'}")
    store.create_tables()
    now = datetime.now(UTC).replace(microsecond=0)
    polls = [now - timedelta(days=d) for d in (20, 13, 6)]
    for n, at in enumerate(polls):
        with store.write() as w:
            w.record_papers("arxiv", [Paper(title=f"Paper {n} {i}", sources=("arxiv",)) for i in range(3)], at)
    with store.write() as w:  # an old paper, outside the history kept
        w.record_papers("arxiv", [Paper(title="Old", sources=("arxiv",))], now - timedelta(days=60))
    with store.engine.connect() as conn, conn.begin():
        command.downgrade(alembic_config(conn), "0006")
    assert store.revision().recorded == "0006"
    store.upgrade()
    assert AlertBook(store).news(["arxiv"], now - timedelta(days=90)) == {"arxiv": polls}
    assert store.source_states() == {}  # the new column came with no source rows to fill
