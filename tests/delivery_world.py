"""A small world for delivery tests: a loopback Hugging Face listing, a config, and the real CLI.

`World.run("run", "--once")` starts `python -m digestbot` in a subprocess, as a user (or a cron job)
would; `World.rows()` reads the ledger straight from the SQLite file. `plugins=[...]` names modules
in tests/ that the subprocess imports first: a channel the tests install (see kill_after_send.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from fixtures import daily_items
from servers import SmtpServer, _SmtpHandler

SLACK_TOKEN_ENV = "DELIVERY_TEST_SLACK_TOKEN"
TESTS = Path(__file__).resolve().parent


def config_text(hf_url: str, smtp_port: int, emails: list[str], *, slack_url: str = "", slack: list[str] = (),
                webhook: str = "", busy_timeout: float = 10.0, send_lease: float = 600, extra_sub: str = "") -> str:
    slack_section = f'[slack]\ntoken_env = "{SLACK_TOKEN_ENV}"\nbase_url = "{slack_url}"\nmin_interval = 0\n' \
        if slack_url else ""
    hook = f'slack_webhook = "{webhook}"\n' if webhook else ""
    return f"""
[bot]
database = "sqlite:///state/bot.db"
busy_timeout = {busy_timeout}
send_lease = {send_lease}

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Paper Digest <digest@example.org>"

{slack_section}
[[sources]]
name = "hf"
kind = "hf_daily"
url = "{hf_url}/api/daily_papers"
limit = 10

[[subscriptions]]
name = "everything"
email = {json.dumps(list(emails))}
slack = {json.dumps(list(slack))}
{hook}schedule = "instant"
max_papers = 5
{extra_sub}"""


@dataclass
class World:
    """`send_backlog`: these tests mean "send what the first poll found", so each `run` of theirs gets
    --send-backlog (a new database's first poll sends nothing without it); False to test that rule."""
    dir: Path
    config: Path
    env: dict[str, str] = field(default_factory=dict)
    send_backlog: bool = True

    def _args(self, args: Sequence[str]) -> list[str]:
        if self.send_backlog and "run" in args and "--no-send" not in args:
            at = list(args).index("run") + 1
            return [*args[:at], "--send-backlog", *args[at:]]
        return list(args)

    @property
    def db(self) -> Path:
        return self.dir / "state" / "bot.db"

    def start(self, *args: str, env: dict[str, str] | None = None, plugins: Sequence[str] = ()) -> subprocess.Popen:
        return subprocess.Popen([*digestbot_program(plugins), "-c", str(self.config), *self._args(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, SLACK_TOKEN_ENV: "xoxb-test", **self.env, **(env or {})})

    def run(self, *args: str, env: dict[str, str] | None = None,
            plugins: Sequence[str] = ()) -> subprocess.CompletedProcess:
        process = self.start(*args, env=env, plugins=plugins)
        out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """A quick command (init, retry, status) in this process: the same `main` as the subprocess."""
        from digestbot.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["-c", str(self.config), *self._args(args)])
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def rows(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.db) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM digest WHERE status != 'empty' ORDER BY id")]


def digestbot_program(plugins: Sequence[str] = ()) -> list[str]:
    """`python -m digestbot`; with plugins, the same `main` after importing each module from tests/
    (appended to the path: digestbot itself is found exactly as `-m` finds it)."""
    if not plugins:
        return [sys.executable, "-m", "digestbot"]
    boot = [f"import sys; sys.path.append({str(TESTS)!r})", *(f"import {name}" for name in plugins),
            "from digestbot.cli import main; sys.exit(main())"]
    return [sys.executable, "-c", "; ".join(boot)]


def make_world(tmp: Path, http_server, **config) -> World:
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): daily_items(6)})
    (tmp / "state").mkdir(exist_ok=True)
    path = tmp / "config.toml"
    path.write_text(config_text(http_server.url, **config), encoding="utf-8")
    return World(tmp, path)


def init(world: World) -> None:
    result = world.cli("init")
    assert result.returncode == 0, result.stderr


class StoppingSmtpServer(SmtpServer):
    """Accepts `stop_after` messages, answers the next DATA with 421 and shuts down (mid-batch)."""

    def __init__(self, stop_after: int, delay: float = 0.0) -> None:
        super().__init__()
        self.stop_after, self.delay = stop_after, delay
        self.stopper: threading.Thread | None = None

    def start(self) -> StoppingSmtpServer:
        self._controller = Controller(_StoppingHandler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self


class _StoppingHandler(_SmtpHandler):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.owner
        if owner.delay:
            await asyncio.sleep(owner.delay)
        if owner.stop_after is not None and len(owner.received) >= owner.stop_after:
            if owner.stopper is None:  # stop() joins the server's own thread: do it from another one
                owner.stopper = threading.Thread(target=owner.stop)
                owner.stopper.start()
            return "421 4.3.2 Service shutting down"
        return await super().handle_DATA(server, session, envelope)


class HookedSmtpServer(SmtpServer):
    """Accepts everything, each DATA after `delay` seconds (a slow relay), and calls `after_accept(n)`
    once the n-th message is stored, before the client hears 250 (to start a fault at that moment)."""

    def __init__(self, delay: float = 0.0, after_accept: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.delay, self.after_accept = delay, after_accept
        self.data_started = 0  # DATA commands the server has begun to answer
        self.answering = self.most_at_once = 0  # DATA commands being answered now, and the most at one time

    def start(self) -> HookedSmtpServer:
        self._controller = Controller(_HookedHandler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def wait_for(self, count: int, *, started: bool = False, timeout: float = 120.0) -> None:
        """Until `count` messages have arrived (or, with `started`, are being answered): a wait for
        an event, not a timing assertion."""
        deadline = time.monotonic() + timeout
        while (self.data_started if started else len(self.received)) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} messages arrived"
            time.sleep(0.05)


class _HookedHandler(_SmtpHandler):
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.owner
        owner.data_started += 1
        owner.answering += 1
        owner.most_at_once = max(owner.most_at_once, owner.answering)
        try:
            if owner.delay:
                await asyncio.sleep(owner.delay)
        finally:
            owner.answering -= 1
        reply = await super().handle_DATA(server, session, envelope)
        if owner.after_accept is not None:
            owner.after_accept(len(owner.received))
        return reply


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another process's write transaction on the SQLite file: BEGIN IMMEDIATE now, ROLLBACK after
    `seconds` (in a thread). Join the thread to wait for the release."""
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=30)
    blocker.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(seconds)
        blocker.execute("ROLLBACK")
        blocker.close()

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    return thread
