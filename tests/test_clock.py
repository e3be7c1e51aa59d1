"""A clock that is wrong for one run loses nothing (issue 16, point 8).

With this machine's clock 8 days ahead, every paper of a poll looked "older than 7 days" and was
recorded without ever being sent. Now a poll compares its clock with the `Date` of the server that
answered it, and past http.CLOCK_TOLERANCE it records nothing, says so, and no send follows; the
next poll with a correct clock picks the papers up as new and fresh.

Two ways to disagree, both real: `run_once` with a shifted `now` against the loopback server (its
`Date` is real time, from BaseHTTPRequestHandler), and the real CLI and daemon job on a correct clock
against a server whose `Date` is 8 days behind (the CLI cannot be given a shifted clock).
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures import daily_items, poll_context, write_config

from digestbot import config as config_module
from digestbot import daemon, pipeline
from digestbot.app import App
from digestbot.http import CLOCK_TOLERANCE, Http
from digestbot.store import Store

SEARCH = """
[[sources]]
name = "search"
kind = "hf_search"
url = "{url}/search"
query = "inference"
"""


def outbox(tmp: Path) -> list[Path]:
    return sorted((tmp / "outbox").glob("*.eml")) if (tmp / "outbox").exists() else []


def fresh_items(count: int = 6) -> list[dict]:
    return daily_items(count, published=datetime.now(UTC) - timedelta(hours=2))


def test_a_run_eight_days_ahead_records_nothing_and_the_next_run_sends_its_papers(http_server, tmp_path):
    http_server.route("/search", fresh_items())
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url), clock_tolerance=CLOCK_TOLERANCE)

    wrong_polls, wrong_sends = pipeline.run_once(ctx, datetime.now(UTC) + timedelta(days=8))
    stored_after_wrong = ctx.store.count_papers()
    polls, sends = pipeline.run_once(ctx, datetime.now(UTC))

    # the promise: the papers of the wrong run are delivered by the next one (old code: recorded
    # as too old by the wrong run, then not new to the right one: never sent)
    assert polls[0].error is None and polls[0].new == 6 and polls[0].matched > 0
    assert [(name, papers) for name, _, _, papers in sends.sent] == [("everyone", polls[0].matched)]
    assert len(outbox(tmp_path)) == 1
    # the wrong run recorded nothing, not even the failure (its time would be wrong too), and sent nothing
    assert stored_after_wrong == 0 and wrong_sends.sent == [] and wrong_sends.failed == []
    [wrong] = wrong_polls
    assert wrong.clock_wrong and wrong.new == 0
    host = http_server.url.removeprefix("http://")
    for part in ("source 'search'", host, "8 days", "ahead", "Nothing was recorded", "NTP",
                 "the next poll with a correct clock picks these papers up"):
        assert part in wrong.error


@pytest.mark.parametrize("skew", [timedelta(minutes=3), -timedelta(minutes=3)], ids=["ahead", "behind"])
def test_three_minutes_of_skew_is_accepted(http_server, tmp_path, skew):
    http_server.route("/search", fresh_items())
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url), clock_tolerance=CLOCK_TOLERANCE)
    polls, sends = pipeline.run_once(ctx, datetime.now(UTC) + skew)
    assert polls[0].error is None and polls[0].new == 6 and len(sends.sent) == 1


def test_eight_days_behind_is_refused_too(http_server, tmp_path):
    http_server.route("/search", fresh_items())
    ctx, _ = poll_context(tmp_path, SEARCH.format(url=http_server.url), clock_tolerance=CLOCK_TOLERANCE)
    [result] = pipeline.run_once(ctx, datetime.now(UTC) - timedelta(days=8))[0]
    assert result.clock_wrong and "8 days" in result.error and "behind" in result.error
    assert ctx.store.count_papers() == 0


def test_a_local_file_source_has_no_server_clock_and_polls_as_before(tmp_path):
    listing = Path(__file__).parent / "data" / "seeds"
    seed = min(listing.glob("*.txt"))
    ctx, _ = poll_context(tmp_path, f'[[sources]]\nname = "saved"\nkind = "text"\npath = "{seed}"\n',
                          clock_tolerance=CLOCK_TOLERANCE)
    result = pipeline.poll(ctx, "saved", datetime.now(UTC) + timedelta(days=8))
    assert result.error is None and result.new > 0


# --- a server whose clock is 8 days behind, for the CLI and the daemon job on a correct clock ----------

class SkewedServer:
    """Answers every GET with `body`; its `Date` header is `offset` from this machine's clock (or
    `date_text` as is), with `Age: age` when set, as a cache sends a stored response."""

    def __init__(self, body: bytes, offset: timedelta) -> None:
        self.body, self.offset = body, offset
        self.age: int | None = None
        self.date_text: str | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)  # sends Date from date_time_string, as real servers do
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.body)))
                if owner.age is not None:
                    self.send_header("Age", str(owner.age))
                self.end_headers()
                self.wfile.write(owner.body)

            def date_time_string(self, timestamp: float | None = None) -> str:
                return owner.date_text or formatdate(time.time() + owner.offset.total_seconds(), usegmt=True)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> SkewedServer:
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_cli_exits_non_zero_records_nothing_and_sends_nothing(tmp_path):
    with SkewedServer(json.dumps(fresh_items()).encode(), -timedelta(days=8)) as server:
        path = write_config(tmp_path, SEARCH.format(url=server.url))
        run = subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), "run", "--once"],
                             check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "search: FAILED: source 'search': this machine's clock says" in run.stdout
    assert "8 days ahead" in run.stdout and outbox(tmp_path) == []
    store = Store(config_module.load(path).database_url)
    assert store.count_papers() == 0


def test_the_daemon_poll_job_skips_its_send_when_the_clock_is_wrong(tmp_path, caplog):
    with SkewedServer(json.dumps(fresh_items()).encode(), timedelta(0)) as server:
        config = config_module.load(write_config(tmp_path, SEARCH.format(url=server.url)))
        ctx = App.from_config(config, http=Http(sleep=lambda s: None, timeout=5))
        assert pipeline.poll(ctx, "search", datetime.now(UTC)).new == 6  # matched: a digest is due
        server.offset = -timedelta(days=8)
        live = daemon.Live(ctx, lambda new: ctx)
        daemon.poll_job(live, "search")
        assert outbox(tmp_path) == []  # old code: the job's send went ahead on the wrong clock
        assert "this machine's clock says" in caplog.text
        daemon.send_job(live)  # the schedule's and the retries' send jobs wait for a right clock too
        assert outbox(tmp_path) == [] and "not sending: the latest poll of search" in caplog.text
        server.offset = timedelta(0)
        daemon.poll_job(live, "search")
        assert len(outbox(tmp_path)) == 1


def test_a_cached_response_is_judged_by_its_date_plus_its_age(tmp_path):
    with SkewedServer(json.dumps(fresh_items()).encode(), -timedelta(hours=2)) as server:
        server.age = 7200  # a cache's stored copy, made two hours ago: the server's clock is right
        ctx, _ = poll_context(tmp_path, SEARCH.format(url=server.url), clock_tolerance=CLOCK_TOLERANCE)
        result = pipeline.poll(ctx, "search", datetime.now(UTC))
    assert result.error is None and result.new == 6


def test_an_unreadable_date_is_nothing_to_compare_with(tmp_path):
    with SkewedServer(json.dumps(fresh_items()).encode(), timedelta(0)) as server:
        server.date_text = "yesterday at noon"
        ctx, _ = poll_context(tmp_path, SEARCH.format(url=server.url), clock_tolerance=CLOCK_TOLERANCE)
        result = pipeline.poll(ctx, "search", datetime.now(UTC) + timedelta(days=8))
    assert result.error is None and result.new == 6  # as before: no evidence the clock is wrong


def test_a_poll_late_in_a_long_run_counts_the_time_since_its_now_was_read(http_server):
    """run_once reads `now` once for every source: the tenth source may be polled minutes later."""
    from digestbot.http import ClockError

    http_server.route("/x", b"ok")
    http = Http(sleep=lambda s: None, timeout=5)
    http.get(f"{http_server.url}/x", source="late")
    read_ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    http.check_clock("late", read_ten_minutes_ago, time.monotonic() - 600)  # right: no error
    with pytest.raises(ClockError, match=r"(9 minutes 59 seconds|10 minutes) behind"):  # Date: whole seconds
        http.check_clock("late", read_ten_minutes_ago, time.monotonic())
    http.forget_server_date("late")  # a new poll: no response yet, nothing to compare
    http.check_clock("late", read_ten_minutes_ago, time.monotonic())
