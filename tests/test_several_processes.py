"""Several `digestbot run --once` processes on one SQLite file, started together (the poll leader lock,
store/leader.py): one polls and opens the digests, the other waits for it and finds the polling done; both
send, each digest goes once, the source is polled once, and both exit 0. The same on PostgreSQL, and two
daemons with one killed, are in test_several_processes_postgres.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fixtures import daily_items
from servers import HttpServer, Reply, Request

from digestbot import config as config_module
from digestbot.store import Store

TESTS = Path(__file__).resolve().parent
READERS = 24
LISTING = "/api/daily_papers"


def write_config(tmp: Path, database: str, hf_url: str, smtp_port: int, *, send_lease: float = 600,
                 readers: int = READERS) -> Path:
    subscriptions = "".join(f"""
[[subscriptions]]
name = "reader {n}"
email = ["reader{n}@example.org"]
schedule = "instant"
max_papers = 100
""" for n in range(readers))
    path = tmp / "config.toml"
    path.write_text(f"""
[bot]
database = "{database}"
send_lease = {send_lease}

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Paper Digest <digest@example.org>"

[[sources]]
name = "hf"
kind = "hf_daily"
url = "{hf_url}{LISTING}"
limit = 10
every = "1h"
""" + subscriptions)
    return path


def serve(http_server: HttpServer, items: list[dict]) -> None:
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): items}, path=LISTING)


def hold_listing_until(http_server: HttpServer, released: threading.Event) -> None:
    """The listing answers only once `released` is set (at most 60 s): the process that polls holds the
    poll leader lock that long, so that the other one is sure to find it taken."""
    inner = http_server.routes[LISTING].body
    assert callable(inner)

    def held(request: Request) -> Reply | None:
        released.wait(60)
        return inner(request)

    http_server.route(LISTING, held)


def listing_requests(http_server: HttpServer) -> int:
    return sum(r.path == LISTING for r in http_server.requests)


def digestbot(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


class Running:
    """A `digestbot` subprocess whose stderr is read as it comes (lines kept, `on_line` called with each)."""

    def __init__(self, path: Path, *args: str, on_line: Callable[[str], None] = lambda line: None):
        self.process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(path), *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.out: list[str] = []
        self.on_line = on_line
        # Both pipes read by threads of ours (communicate() would take stderr's lines from under `on_line`).
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._read_out, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            self.on_line(line)

    def _read_out(self) -> None:
        assert self.process.stdout is not None
        self.out.extend(self.process.stdout)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            assert self.process.poll() is None or text in self.log, f"exited without {text!r}:\n{self.log}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.log}"
            time.sleep(0.1)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        self.process.wait(timeout)
        for reader in self.readers:
            reader.join(10)
        return self.process.returncode, "".join(self.out), self.log

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def two_runs_together(path: Path, http_server: HttpServer) -> list[tuple[int, str, str]]:
    """Start two `run --once --json` at once; the listing waits until one of them says it waits for the
    other. Their (exit code, stdout, stderr)."""
    released = threading.Event()
    hold_listing_until(http_server, released)

    def watch(line: str) -> None:
        if "another digestbot process is polling" in line and "waiting for it" in line:
            released.set()

    runs = [Running(path, "run", "--once", "--json", on_line=watch) for _ in range(2)]
    try:
        return [run.finish() for run in runs]
    finally:
        released.set()
        for run in runs:
            run.kill()


def check_two_runs(results: list[tuple[int, str, str]], received: list, polls_before: int,
                   polls_after: int) -> None:
    for code, out, err in results:
        assert code == 0, out + err
        assert "restore" not in out + err and "backup" not in out + err and "Traceback" not in err
    reports = [json.loads(out) for _, out, _ in results]
    follower = [r for r in reports if r["polled_by_another"] == ["hf"]]
    leader = [r for r in reports if r["polled_by_another"] == []]
    assert len(follower) == 1 and len(leader) == 1, reports
    assert leader[0]["sources"][0]["new"] == 10 and follower[0]["sources"][0]["error"] is None
    assert any("waiting for it" in err for _, _, err in results)
    # Every digest once: one message per reader, each sent by one of the two.
    assert sorted(Counter(tuple(m.rcpt_tos) for m in received).values()) == [1] * READERS
    assert len(leader[0]["sent"]) + len(follower[0]["sent"]) == READERS
    assert polls_after == polls_before + 1  # polled once, by the leader


def polls_of(path: Path, source: str = "hf") -> int:
    with Store(config_module.load(path).database_url) as store:
        return store.source_states()[source].polls


def test_two_run_once_on_one_sqlite_file_poll_once_send_each_digest_once_and_both_exit_0(tmp_path, http_server,
                                                                                          smtp_server):
    items = daily_items(30)
    serve(http_server, items[:20])
    path = write_config(tmp_path, "sqlite:///digestbot.db", http_server.url, smtp_server.port)
    first = digestbot(path, "run", "--once", "--no-send")  # the installation: what is listed today is history
    assert first.returncode == 0, first.stderr
    before, requests = polls_of(path), listing_requests(http_server)
    serve(http_server, items[:30])
    results = two_runs_together(path, http_server)
    check_two_runs(results, smtp_server.received, before, polls_of(path))
    together = listing_requests(http_server) - requests
    alone = digestbot(path, "run", "--once")  # a later run alone polls again, as always: what one poll asks
    assert alone.returncode == 0 and "polled by another" not in alone.stdout
    assert polls_of(path) == before + 2
    assert together == listing_requests(http_server) - requests - together  # the two runs made one poll's requests


def test_the_text_report_says_plainly_that_another_process_polled(tmp_path, http_server, smtp_server):
    items = daily_items(12)
    serve(http_server, items[:2])
    path = write_config(tmp_path, "sqlite:///digestbot.db", http_server.url, smtp_server.port, readers=2)
    assert digestbot(path, "run", "--once", "--no-send").returncode == 0
    serve(http_server, items)
    released = threading.Event()
    hold_listing_until(http_server, released)
    requests = listing_requests(http_server)
    leader = Running(path, "run", "--once")
    while listing_requests(http_server) == requests:  # it holds the lock and waits for the listing
        assert leader.process.poll() is None, leader.log
        time.sleep(0.05)
    follower = Running(path, "run", "--once",
                       on_line=lambda line: released.set() if "waiting for it" in line else None)
    try:
        (code, out, err), (leader_code, _, _) = follower.finish(), leader.finish()
    finally:
        released.set()
        follower.kill()
        leader.kill()
    assert code == 0 and leader_code == 0, err
    assert "hf: polled by another digestbot process" in out
    assert "every source was polled by another digestbot process sharing this database" in out
    assert "FAILED" not in out and "database busy" not in err
    assert "another digestbot process is polling (digestbot run --once, pid" in err
    assert len(smtp_server.received) == 2
