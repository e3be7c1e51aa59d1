"""`digestbot run`: the daemon under a real scheduler, --no-send, the no-flood rule, papers and status."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    result = digestbot(path, "run", "--once")
    assert result.returncode == 0, result.stderr
    [mail] = outbox(tmp_path)
    assert "3 new papers" in mail.read_text()
    listed = json.loads(digestbot(path, "papers", "--json").stdout)
    assert len(listed) == 8  # all recorded, only the fresh ones delivered
    assert {"id", "title", "abstract", "authors", "url", "published", "upvotes", "sources"} <= set(listed[0])


def test_status_shows_sources_and_deliveries(tmp_path, http_server):
    serve(http_server, daily_items(4))
    path = config(tmp_path, http_server.url)
    digestbot(path, "run", "--once")
    status = digestbot(path, "status")
    assert status.returncode == 0, status.stderr
    assert "hf" in status.stdout and "last success" in status.stdout
    assert "papers: 4" in status.stdout and "sent 4" in status.stdout


def test_daemon_polls_sends_and_stops_cleanly_on_sigterm(tmp_path, http_server):
    serve(http_server, daily_items(6))
    path = config(tmp_path, http_server.url)
    process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), "run"],
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
