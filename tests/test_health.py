"""Health an admin can watch (issue 20, point 5): `digestbot status` exits 1 while a source's latest poll
failed or a digest failed; the real `digestbot serve` answers `GET /metrics` in Prometheus' format from the
database, as `digestbot run --once` (another process) changes it; log lines carry an ISO date and time, are
JSON with `--log-format json`, and the daemon's start says one line instead of APScheduler's chatter."""
from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime

import httpx
from delivery_world import World
from prometheus_client.parser import text_string_to_metric_families
from test_web import ALICE, BOB, new_papers, start_serve, stop, wait_for, web_world

HTML_ERROR = b"<!DOCTYPE html><html><head><title>503</title></head><body>We'll be right back.</body></html>"
ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+: ")


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, as Prometheus' own parser reads the page."""
    response = httpx.get(f"{base}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def started_empty(world: World, http_server) -> None:
    """A first pass over an empty listing: whatever a new database's first poll does, the papers listed
    after it are new and sent as usual."""
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): []})
    assert world.run("run", "--once", "--no-send").returncode == 0


def status(world: World) -> tuple[int, dict]:
    result = world.cli("status", "--json")
    return result.returncode, json.loads(result.stdout)


def test_metrics_and_status_follow_what_another_process_did(tmp_path, http_server, smtp_server):
    world, base = web_world(tmp_path, http_server, smtp_server)
    serve = start_serve(world, base)
    try:
        metrics = scrape(base)
        assert metrics[("digestbot_database_up", ())] == 1 and metrics[("digestbot_papers_total", ())] == 0
        assert not any(name.startswith("digestbot_source_") for name, _ in metrics)  # never polled: not failing
        assert ("digestbot_daemon_heartbeat_age_seconds", ()) not in metrics
        assert status(world)[0] == 0

        started_empty(world, http_server)
        new_papers(http_server, 6)
        smtp_server.fail_rcpt[BOB] = "550 5.1.1 no such user"
        before = time.time()
        assert world.run("run", "--once").returncode == 1  # Bob's digest failed
        metrics = scrape(base)
        email = (("channel", "email"),)
        hf = (("source", "hf"),)
        assert metrics[("digestbot_papers_total", ())] == 6
        assert metrics[("digestbot_matches_total", ())] == 6
        assert metrics[("digestbot_digests_sent_total", email)] == 1
        assert metrics[("digestbot_digests_failed", email)] == 1
        assert metrics[("digestbot_ledger_backlog_digests", email)] == 0
        assert metrics[("digestbot_source_up", hf)] == 1
        assert metrics[("digestbot_source_listings_total", hf)] == 6
        assert metrics[("digestbot_source_last_new_papers", hf)] == 6
        assert before - 5 <= metrics[("digestbot_source_last_success_timestamp_seconds", hf)] <= time.time()
        code, document = status(world)
        assert code == 1 and document["healthy"] is False
        assert document["problems"] == ["1 digests failed (`digestbot status` lists them; fix the cause, then "
                                        "`digestbot retry --failed`)"]
        text = world.cli("status")
        assert text.returncode == 1 and "unhealthy (exit 1):\n  1 digests failed" in text.stdout

        # The admin fixes the address and retries: healthy again, and the metrics say so.
        smtp_server.fail_rcpt.clear()
        assert world.cli("retry", "--failed").returncode == 0
        assert world.run("run", "--once").returncode == 0
        assert [r for rcpts in smtp_server.rcpts for r in rcpts].count(BOB) == 1
        metrics = scrape(base)
        assert metrics[("digestbot_digests_sent_total", email)] == 2
        assert metrics[("digestbot_digests_failed", email)] == 0
        code, document = status(world)
        assert code == 0 and document["healthy"] is True and document["problems"] == []

        polls = metrics[("digestbot_source_polls_total", hf)]
        assert polls >= 3 and metrics[("digestbot_source_failed_polls_total", hf)] == 0

        # The listing breaks: the source is down in both, until a poll works again.
        http_server.route("/api/daily_papers", HTML_ERROR, headers={"Content-Type": "text/html"})
        assert world.run("run", "--once").returncode == 1
        metrics = scrape(base)
        assert metrics[("digestbot_source_up", hf)] == 0
        assert metrics[("digestbot_source_polls_total", hf)] == polls + 1
        assert metrics[("digestbot_source_failed_polls_total", hf)] == 1
        assert metrics[("digestbot_source_last_poll_timestamp_seconds", hf)] > \
            metrics[("digestbot_source_last_success_timestamp_seconds", hf)]
        code, document = status(world)
        [problem] = document["problems"]
        assert code == 1 and problem.startswith("source hf: its latest poll failed: ") and "HTML" in problem
        assert [s["failing"] for s in document["sources"]] == [True]
        new_papers(http_server, 8)
        assert world.run("run", "--once").returncode == 0
        assert scrape(base)[("digestbot_source_up", hf)] == 1 and status(world)[0] == 0
        assert [r for rcpts in smtp_server.rcpts for r in rcpts].count(ALICE) == 2  # the 6, then the 2 new

        # A database that has gone is reported as down, not recreated empty.
        world.db.rename(world.db.with_name("moved.db"))
        metrics = scrape(base)
        assert metrics == {("digestbot_database_up", ()): 0}
        assert not world.db.exists()
    finally:
        err = stop(serve)
    assert "token=" not in err


def test_daemon_logs_carry_iso_times_and_no_scheduler_chatter(tmp_path, http_server, smtp_server):
    world, _ = web_world(tmp_path, http_server, smtp_server)
    daemon = world.start("run")

    def beating() -> bool:
        with sqlite3.connect(world.db) as conn:
            return conn.execute("SELECT count(*) FROM heartbeat").fetchone()[0] == 1

    try:
        wait_for(beating, daemon)
        time.sleep(1)  # the first polls' lines
    finally:
        daemon.terminate()
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    lines = err.splitlines()
    assert lines and all(ISO_LINE.match(line) for line in lines if not line.startswith(("digestbot ", " "))), err
    assert any("daemon started" in line and "1 poll jobs" in line for line in lines), err
    for chatter in ("Adding job tentatively", "Added job", "Scheduler started", "Running job"):
        assert chatter not in err


def test_log_format_json_for_log_shippers_covers_the_web_server_too(tmp_path, http_server, smtp_server):
    world, base = web_world(tmp_path, http_server, smtp_server)
    process = world.start("serve", "--log-format", "json")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
            time.sleep(0.1)
    finally:
        err = stop(process)
    records = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert records and all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert all(datetime.fromisoformat(r["time"]).tzinfo is not None for r in records)
    loggers = {r["logger"] for r in records}
    assert "digestbot.web.app" in loggers and "uvicorn.error" in loggers, loggers
