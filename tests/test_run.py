"""`digestbot run`: the daemon under a real scheduler, --no-send, the no-flood rule, papers and status."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures import daily_items


def config(tmp: Path, url: str, *, schedule: str = "instant", extra: str = "") -> Path:
    path = tmp / "config.toml"
    path.write_text(f"""
[bot]
outbox = "outbox"
{extra}

[[sources]]
name = "hf"
kind = "hf_daily"
url = "{url}/api/daily_papers"
every = "1h"

[[subscriptions]]
name = "Everything"
email = ["all@example.org"]
schedule = "{schedule}"
max_papers = 100
""")
    return path


def digestbot(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=120)


def outbox(tmp: Path) -> list[Path]:
    return sorted((tmp / "outbox").glob("*.eml")) if (tmp / "outbox").exists() else []


def serve(http_server, items_today: list[dict], items_yesterday: list[dict] = ()) -> None:
    today = datetime.now(UTC).date()
    http_server.daily_papers({str(today): list(items_today), str(today - timedelta(days=1)): list(items_yesterday)})


def test_no_send_records_everything_and_sends_nothing_then_only_new_papers_go_out(tmp_path, http_server):
    items = daily_items(30)
    serve(http_server, items[:20])
    path = config(tmp_path, http_server.url)
    first = digestbot(path, "run", "--once", "--no-send")
    assert first.returncode == 0, first.stderr
    assert "20 new" in first.stdout and outbox(tmp_path) == []
    second = digestbot(path, "run", "--once")
    assert second.returncode == 0 and outbox(tmp_path) == []  # nothing old floods in later
    serve(http_server, items[:30])
    third = digestbot(path, "run", "--once")
    assert third.returncode == 0, third.stderr
    [mail] = outbox(tmp_path)
    text = mail.read_text()
    assert "10 new papers" in text
    assert all(" ".join(i["paper"]["title"].split())[:40] not in text.replace("=\n", "") for i in items[:20])


def test_papers_published_long_before_first_sighting_are_recorded_not_sent(tmp_path, http_server):
    now = datetime.now(UTC)
    old = daily_items(5, published=now - timedelta(days=30))
    fresh = daily_items(8, published=now)[5:]
    serve(http_server, old + fresh)
    path = config(tmp_path, http_server.url, extra="max_age_days = 7")
    result = digestbot(path, "run", "--once", "--send-backlog")  # a new database: send the first poll's too
    assert result.returncode == 0, result.stderr
    [mail] = outbox(tmp_path)
    assert "3 new papers" in mail.read_text()
    listed = json.loads(digestbot(path, "papers", "--json").stdout)
    assert len(listed) == 8  # all recorded, only the fresh ones delivered
    assert {"id", "title", "abstract", "authors", "url", "published", "upvotes", "sources"} <= set(listed[0])


def test_status_shows_sources_and_deliveries(tmp_path, http_server):
    serve(http_server, daily_items(4))
    path = config(tmp_path, http_server.url)
    digestbot(path, "run", "--once", "--send-backlog")
    status = digestbot(path, "status")
    assert status.returncode == 0, status.stderr
    assert "hf" in status.stdout and "last success" in status.stdout
    assert "papers: 4" in status.stdout and "sent 4" in status.stdout


def test_daemon_polls_sends_and_stops_cleanly_on_sigterm(tmp_path, http_server):
    serve(http_server, daily_items(6))
    path = config(tmp_path, http_server.url)
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), "run", "--send-backlog"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not outbox(tmp_path) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert outbox(tmp_path), "the daemon's first poll sent nothing"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "stopping" in err and "6 papers listed, 6 new" in err
    assert len(outbox(tmp_path)) == 1


@pytest.mark.parametrize("start", [[], ["init"]])
def test_first_poll_of_a_new_database_records_and_sends_nothing_later_papers_are_sent(tmp_path, http_server, start):
    items = daily_items(30)
    serve(http_server, items[:20])
    path = config(tmp_path, http_server.url)
    if start:
        assert digestbot(path, *start).returncode == 0
    first = digestbot(path, "run", "--once")
    assert first.returncode == 0, first.stderr
    assert outbox(tmp_path) == []  # no flood of what was listed before the installation started
    assert "first poll of a new database: recorded 20 papers" in first.stdout
    assert "first poll of a new database" in first.stderr and "--send-backlog" in first.stderr  # the log says so
    serve(http_server, items[:30])
    second = digestbot(path, "run", "--once")
    assert second.returncode == 0, second.stderr
    [mail] = outbox(tmp_path)
    assert "10 new papers" in mail.read_text() and "first poll" not in second.stdout


def test_a_run_killed_after_one_source_still_holds_the_first_poll_of_the_others(tmp_path, http_server):
    """The rule is a fact in the database, written by each source's own poll transaction: a first run
    killed after polling source `a` and while polling `b` leaves `b` a first poll, sent nothing."""
    items = daily_items(30)
    serve(http_server, items[:10])
    reached, release = threading.Event(), threading.Event()

    def hanging(request):
        reached.set()
        release.wait(30)
        return 200, {}, []

    http_server.route("/b/api/daily_papers", hanging)
    path = config(tmp_path, http_server.url)
    text = path.read_text().replace("[[subscriptions]]", f"""[[sources]]
name = "b"
kind = "hf_daily"
url = "{http_server.url}/b/api/daily_papers"
every = "1h"

[[subscriptions]]""")
    path.write_text(text)
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), "run", "--once"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reached.wait(60), "source b was never polled"
        process.kill()  # SIGKILL while polling b: a's first poll is committed, b's is not
        process.communicate(timeout=30)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()
    http_server.daily_papers({str(datetime.now(UTC).date()): items[10:16]}, path="/b/api/daily_papers")
    again = digestbot(path, "run", "--once")
    assert again.returncode == 0, again.stderr
    assert outbox(tmp_path) == []  # b's first poll (6 papers) is still held; a found nothing new
    assert "recorded 6 papers" in again.stdout
    serve(http_server, items[:10] + items[16:18])  # two papers neither source listed before
    third = digestbot(path, "run", "--once")
    [mail] = outbox(tmp_path)
    assert third.returncode == 0 and "2 new papers" in mail.read_text()


def test_no_send_reports_what_it_recorded_honestly(tmp_path):
    path = config(tmp_path, "http://127.0.0.1:9")  # nothing listens: the source fails
    result = digestbot(path, "run", "--once", "--no-send")
    assert result.returncode == 1
    assert "recorded everything" not in result.stdout
    assert "every source failed, so nothing was recorded" in result.stdout


def test_no_send_without_once_is_a_daemon_that_only_records(tmp_path, http_server):
    serve(http_server, daily_items(6))
    path = config(tmp_path, http_server.url)
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), "run", "--no-send"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            listed = digestbot(path, "papers", "--json")
            if listed.returncode == 0 and len(json.loads(listed.stdout)) == 6:
                break
            time.sleep(0.3)
        time.sleep(1)  # a send would follow the poll at once
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "recording only" in err and "6 papers listed, 6 new" in err
    assert outbox(tmp_path) == []


def test_read_only_commands_never_create_a_database(tmp_path):
    path = config(tmp_path, "http://127.0.0.1:9")
    for command in (["status"], ["papers"], ["retry"], ["subs", "test", "Everything"], ["preview", "Everything"],
                    ["feedback", "list", "Everything"]):
        result = digestbot(path, *command)
        assert result.returncode == 1, (command, result.stderr)
        assert "no database at" in result.stderr and "`digestbot init` creates one" in result.stderr
    assert not (tmp_path / "digestbot.db").exists() and not (tmp_path / ".digestbot-databases.json").exists()


def test_cli_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "digestbot", "--help"], capture_output=True, text=True)
    for command in ("run", "check", "status", "papers", "sources", "demo"):
        assert command in result.stdout
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for command in ("run", "check", "status", "papers", "sources check", "demo"):
        assert f"digestbot [-c CONFIG] {command}" in readme or f"digestbot {command}" in readme


def test_demo_runs_offline_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digestbot", "demo"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "DIGESTBOT_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert "digests written" in result.stdout
    written = list((tmp_path / "digestbot-demo" / "outbox").iterdir())
    assert any(p.suffix == ".eml" for p in written) and any(p.suffix == ".json" for p in written)
