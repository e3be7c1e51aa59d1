"""Rendering apart (render/apart.py): a send pass of APART_FROM digests or more renders them, and builds
each email's shared part, in a child process. What each test guards:

- the same bytes: every recipient gets exactly the email an in-process pass sends them (text, HTML and
  headers, but for Date, the database's installation id and the random MIME boundary), and the pass
  really did render apart (its child process was seen);
- the child SIGKILLed mid-pass (as the OOM killer would): the pass renders on in its own thread, every
  digest is sent exactly once, none fails, and the fallback is logged;
- a child that cannot start (its Python gone), or exits at once, is said once, and the pass renders in its
  own thread;
- a template error in the child is that digest's failure alone (recorded, retried later); the rest go;
- the real CLI at the real threshold (APART_FROM digests): `python -m digestbot run --once` exits 0, renders
  apart, each recipient gets one email, no traceback (the child, started from that command,
  neither runs the CLI a second time nor fails to start).

Real aiosmtpd on loopback, real SQLite files, the hf_daily source over loopback HTTP for the CLI.
`apart.APART_FROM` (and, where a test needs several claims in one pass, `pipeline.BATCH`) are lowered:
they are size settings, the code that runs is the product's.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from delivery_world import HookedSmtpServer
from fixtures import daily_items
from servers import HttpServer, Received, SmtpServer

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.bundled import templates_folder
from digestbot.errors import ParseError
from digestbot.render import apart
from digestbot.sources.hf_json import parse_items_json
from digestbot.store import Store
from digestbot.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # one fixed `now` for seeding and sending: same periods, same bodies
NEVER = 10**9  # APART_FROM no pass reaches: rendered in-process
# name: (query, recipients). Several recipients share a subscription (one content, many envelopes); a
# non-ASCII name (an encoded Subject and List-Id) and a display name with an umlaut (an encoded To).
SUBSCRIPTIONS = {
    "LLM inference": ("inference", ["ann@example.org", "bob@example.org", "Zoë Ünal <zoe@example.org>",
                                    "dan@example.org"]),
    "Modèles de langue": ('"language models"', ["eve@example.org", "fay@example.org", "gus@example.org"]),
    "Membership": ("membership", ["hal@example.org", "ivy@example.org"]),
    "Sparse": ("sparse", ["jon@example.org"]),
    "Learning": ("learning", ["kim@example.org", "lea@example.org"]),
    "Neural": ("neural OR agents", ["max@example.org"]),
    "Bayesian": ("bayesian", ["ned@example.org"]),
    "Code": ("code", ["oli@example.org"]),
    "Privacy": ("private OR leakage", ["pam@example.org", "quinn@example.org"]),
}


def _address(target: str) -> str:
    return target.rpartition("<")[2].rstrip(">")


def _write_config(folder: Path, port: int, subscriptions: dict[str, tuple[str, list[str]]], *,
                  templates: Path | None = None, max_papers: int = 4, connections: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f'[bot]\ndatabase = "sqlite:///{folder}/state.db"\n']
    if templates is not None:
        lines.append(f'templates = "{templates}"\n')
    lines.append(f'\n[email]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                 f'sender = "Paper Digest <digest@example.org>"\nconnections = {connections}\n')
    for name, (query, recipients) in subscriptions.items():
        # max_papers below most subscriptions' match count: the "...and N more" line is rendered too
        lines.append(f"\n[[subscriptions]]\nname = {json.dumps(name)}\nquery = {json.dumps(query)}\n"
                     f"email = {json.dumps(recipients, ensure_ascii=False)}\nschedule = \"instant\"\n"
                     f"max_papers = {max_papers}\n")
    path = folder / "config.toml"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _world(folder: Path, port: int, subscriptions: dict[str, tuple[str, list[str]]], *,
           templates: Path | None = None, papers: int = 40, connections: int = 1) -> App:
    """A new database with the first `papers` of the recorded Hugging Face listing, matched by the real
    matcher and recorded as a poll records them (each subscription's digests are then due at NOW)."""
    config = config_module.load(_write_config(folder, port, subscriptions, templates=templates,
                                              connections=connections))
    Store(config.database_url).create_tables()
    ctx = App.from_config(config)
    listed = parse_items_json(json.dumps(daily_items(papers, NOW)).encode(), ParseError, "hf")
    with ctx.store.write() as w:
        new = w.record_papers("hf", listed, NOW)
        ids = {paper.key: paper_id for paper_id, paper in new}
        matches = ctx.matcher.match([paper for _, paper in new])
        w.record_matches([(ids[m.paper.key], m) for m in matches], pipeline._all_targets(ctx.config), NOW)
    assert {m.subscription_id for m in matches} == {s.id for s in config.subscriptions}  # each has a digest
    return ctx


class RenderChild:
    """Watches this process's render children (/proc) from a thread while a pass runs and, with
    `kill_after`, SIGKILLs one once the SMTP sink holds that many messages (0: as soon as it exists,
    while it is still starting)."""

    def __init__(self, smtp: SmtpServer | None = None, kill_after: int | None = None) -> None:
        self.smtp, self.kill_after = smtp, kill_after
        self.seen: set[int] = set()
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> RenderChild:
        assert not _render_children(os.getpid()), "a render child of an earlier test is still running"
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _due(self) -> bool:
        if self.kill_after is None or self.killed:
            return False
        return self.smtp is None or len(self.smtp.received) >= self.kill_after

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in _render_children(os.getpid()):
                self.seen.add(pid)
                if self._due():
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
            time.sleep(0.005)


def _statuses(ctx: App) -> Counter:
    ledger = Ledger(ctx.store)
    return Counter({status: len(ledger.digests(status)) for status in ("pending", "sending", "sent", "failed")})


def _by_recipient(smtp: SmtpServer) -> dict[str, Received]:
    recipients = [r for received in smtp.received for r in received.rcpt_tos]
    assert len(recipients) == len(set(recipients)), Counter(recipients).most_common(3)  # nobody twice
    return {received.rcpt_tos[0]: received for received in smtp.received}


def _comparable(received: Received, installation: str) -> bytes:
    """The email's bytes but for what may differ between two databases and two runs: the Date line, the
    installation id in the Message-ID, and the MIME boundary (random: email_wire._boundary)."""
    raw = re.sub(rb"(?m)^Date: .*\r\n", b"", received.raw)
    boundary = received.message.get_boundary()
    assert boundary, "an email digest carries text and HTML"
    return raw.replace(boundary.encode("ascii"), b"BOUNDARY").replace(installation.encode("ascii"), b"INSTALLATION")


def _send(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch, apart_from: int) -> tuple[App, SmtpServer,
                                                                                                  set[int]]:
    """One pass over two connections to a relay answering each DATA after 30 ms (so both carry messages)."""
    monkeypatch.setattr(apart, "APART_FROM", apart_from)
    monkeypatch.setattr(apart, "READY_WAIT", 60)  # every batch apart: no batch rendered here while it starts
    with HookedSmtpServer(delay=0.03) as smtp:
        ctx = _world(tmp_path / name, smtp.port, SUBSCRIPTIONS, connections=2)
        with RenderChild() as child:
            result = pipeline.send_due(ctx, NOW)
    assert not result.failed and result.deferred == 0
    assert smtp.most_at_once == 2
    return ctx, smtp, child.seen


def _boundaries_by_list(smtp: SmtpServer) -> dict[str, set[str]]:
    """The MIME boundaries of each subscription's emails (by List-Id)."""
    found: dict[str, set[str]] = {}
    for received in smtp.received:
        found.setdefault(str(received.message["List-Id"]), set()).add(str(received.message.get_boundary()))
    return found


def test_rendering_apart_sends_every_recipient_the_same_email_as_rendering_in_process(tmp_path, monkeypatch):
    recipients = sorted(_address(r) for _, targets in SUBSCRIPTIONS.values() for r in targets)
    assert len(recipients) >= 15
    apart_ctx, apart_smtp, apart_children = _send(tmp_path, "apart", monkeypatch, apart_from=1)
    here_ctx, here_smtp, here_children = _send(tmp_path, "here", monkeypatch, apart_from=NEVER)
    assert len(apart_children) == 1  # the pass rendered in a child process (one for the whole pass)...
    assert not here_children  # ...and the in-process pass started none
    apart_mail, here_mail = _by_recipient(apart_smtp), _by_recipient(here_smtp)
    assert sorted(apart_mail) == sorted(here_mail) == recipients  # each recipient exactly once, in both
    assert _statuses(apart_ctx) == _statuses(here_ctx) == Counter(sent=len(recipients))
    for recipient in recipients:
        got, expected = apart_mail[recipient].message, here_mail[recipient].message
        for header in ("Subject", "From", "To", "List-Id", "List-Unsubscribe", "Auto-Submitted"):
            assert got[header] == expected[header], (recipient, header)
        assert got["Message-ID"].replace(apart_ctx.store.installation, "") == \
            expected["Message-ID"].replace(here_ctx.store.installation, "")
        for kind in ("plain", "html"):
            got_part, expected_part = got.get_body((kind,)), expected.get_body((kind,))
            assert got_part is not None and expected_part is not None, (recipient, kind)
            assert got_part.get_content() == expected_part.get_content(), (recipient, kind)
        # and byte for byte: the child's shared part (email_wire.premake) is what the channel would build
        assert _comparable(apart_mail[recipient], apart_ctx.store.installation) == \
            _comparable(here_mail[recipient], here_ctx.store.installation), recipient
    html = here_mail["ann@example.org"].message.get_body(("html",))
    assert html is not None and "inference" in html.get_content().lower()  # not empty
    # The channel used the child's shared part: in-process each connection serialises a content's part
    # itself (two connections: two boundaries for a subscription whose recipients both carried), while
    # the part made with the rendering is one, whichever connection sends it.
    assert any(len(found) > 1 for found in _boundaries_by_list(here_smtp).values())
    assert all(len(found) == 1 for found in _boundaries_by_list(apart_smtp).values())


@pytest.mark.parametrize("kill_after", [0, 6], ids=["while-starting", "after-six-messages"])
def test_the_render_child_killed_mid_pass_loses_no_digest_and_sends_none_twice(tmp_path, monkeypatch, caplog,
                                                                                kill_after):
    """Killed while starting: the chunks it had come back broken and are rendered in-process. Killed
    after six messages: the pass is a few claims further on (BATCH lowered to 8: several claims in a
    48-digest pass, as in a real one of thousands) and hands the next claim to a dead child."""
    monkeypatch.setattr(apart, "APART_FROM", 1)
    monkeypatch.setattr(apart, "READY_WAIT", 60)
    monkeypatch.setattr(pipeline, "BATCH", 8)
    subscriptions = {f"Inference {n}": ("inference", [f"i{n}-{k}@example.org" for k in range(2)]) for n in range(24)}
    recipients = [r for _, targets in subscriptions.values() for r in targets]
    caplog.set_level(logging.WARNING, logger="digestbot")
    with HookedSmtpServer(delay=0.06) as smtp:  # ~3 s for the pass: the kill lands mid-pass
        ctx = _world(tmp_path, smtp.port, subscriptions)
        with RenderChild(smtp, kill_after=kill_after) as child:
            result = pipeline.send_due(ctx, NOW)
    assert len(child.killed) == 1 and child.seen == set(child.killed)  # killed, and no second child started
    assert Counter(r for received in smtp.received for r in received.rcpt_tos) == Counter(recipients)
    assert not result.failed and result.deferred == 0 and len(result.sent) == len(recipients)
    assert _statuses(ctx) == Counter(sent=len(recipients))
    stopped = [r for r in caplog.records if "rendering apart stopped" in r.getMessage()]
    assert len(stopped) == 1 and stopped[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize(("python", "error"), [("no-such-python", "FileNotFoundError"),
                                               ("/bin/true", "exited (status 0)")], ids=["missing", "exits-at-once"])
def test_a_render_child_that_cannot_start_leaves_the_pass_to_render_in_its_own_thread(tmp_path, monkeypatch, caplog,
                                                                                      python, error):
    """Its Python is gone (a virtualenv upgraded under a running daemon): the child cannot start, and the
    pass renders everything itself. A child that starts and exits at once: the chunks handed to it come
    back broken, and the pass renders them, and the rest, itself."""
    monkeypatch.setattr(apart, "APART_FROM", 1)
    monkeypatch.setattr(apart, "READY_WAIT", 60)
    monkeypatch.setattr(apart, "PYTHON", str(tmp_path / python) if "/" not in python else python)
    caplog.set_level(logging.WARNING, logger="digestbot")
    with SmtpServer() as smtp:
        ctx = _world(tmp_path, smtp.port, SUBSCRIPTIONS)
        result = pipeline.send_due(ctx, NOW)
    recipients = sorted(_address(r) for _, targets in SUBSCRIPTIONS.values() for r in targets)
    assert sorted(_by_recipient(smtp)) == recipients and not result.failed
    assert _statuses(ctx) == Counter(sent=len(recipients))
    stopped = [r.getMessage() for r in caplog.records if "rendering apart stopped" in r.getMessage()]
    assert len(stopped) == 1 and error in stopped[0], stopped  # said once, not once a chunk


def test_a_template_error_in_the_child_fails_that_digest_alone(tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    templates.mkdir()
    for name in ("digest.txt.j2", "digest.html.j2"):
        shutil.copy(templates_folder() / name, templates / name)
    with (templates / "digest.txt.j2").open("a", encoding="utf-8") as text:  # StrictUndefined: raises
        text.write('{% if digest.subscription_id == "bad" %}{{ no_such_variable }}{% endif %}\n')
    subscriptions = {"bad": ("inference", ["b1@example.org", "b2@example.org"]),
                     **{name: SUBSCRIPTIONS[name] for name in ("LLM inference", "Membership", "Sparse", "Learning")}}
    good = sorted(_address(r) for name, (_, targets) in subscriptions.items() if name != "bad" for r in targets)
    monkeypatch.setattr(apart, "APART_FROM", 1)
    monkeypatch.setattr(apart, "READY_WAIT", 60)
    with SmtpServer() as smtp:
        ctx = _world(tmp_path / "world", smtp.port, subscriptions, templates=templates)
        with RenderChild() as child:
            result = pipeline.send_due(ctx, NOW)
    assert len(child.seen) == 1  # rendered apart: the error came back from the child
    assert sorted(_by_recipient(smtp)) == good  # every other digest sent, once
    assert sorted(target for _, target, _ in result.failed) == ["b1@example.org", "b2@example.org"]
    ledger = Ledger(ctx.store)
    assert sorted(_address(row.target) for row in ledger.digests("sent")) == good
    failed = ledger.digests("pending")  # a failed attempt: retried later (`digestbot retry`)
    assert sorted(row.target for row in failed) == ["b1@example.org", "b2@example.org"]
    for row in failed:
        assert row.subscription_id == "bad" and row.attempts == 1
        assert "'no_such_variable' is undefined" in (row.last_error or ""), row.last_error
        assert "digest.txt.j2:" in (row.last_error or ""), row.last_error  # where, though only text came back


def _render_children(pid: int) -> set[int]:
    """The render children (apart.PROGRAM) among the children of process `pid`, from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if re.search(rf"(?m)^PPid:\s*{pid}$", status) and b"digestbot.render.apart" in cmdline:
            found.add(int(entry.name))
    return found


def test_the_cli_renders_a_large_pass_apart_and_sends_each_digest_once(tmp_path, http_server: HttpServer):
    """The real threshold (nothing lowered) through the real command and its child: were the CLI to run
    again in the child, it would poll and send a second time, or fail with a traceback; were its output
    the command's, `--json` would not parse."""
    subs = apart.APART_FROM
    http_server.daily_papers({datetime.now(UTC).date().isoformat(): daily_items(12)})
    with SmtpServer() as smtp:
        config = _write_config(tmp_path, smtp.port, {})
        text = config.read_text(encoding="utf-8").replace("[email]", (
            f'[[sources]]\nname = "hf"\nkind = "hf_daily"\nurl = "{http_server.url}/api/daily_papers"\n\n[email]'))
        text += "".join(f'\n[[subscriptions]]\nname = "sub {n}"\nquery = "inference"\nemail = ["r{n}@example.org"]\n'
                        f'schedule = "instant"\nmax_papers = 3\n' for n in range(subs))
        config.write_text(text, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(config), "run", "--once",
                                    "--send-backlog", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env)
        children: set[int] = set()
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                children.update(_render_children(process.pid))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out, err = process.communicate(timeout=120)
        watching.set()
        watcher.join(timeout=10)
        took = time.monotonic() - started
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(children) == 1  # the pass rendered apart, in one child
    document = json.loads(out)
    assert not document["failed"] and document["deferred"] == 0
    recipients = [f"r{n}@example.org" for n in range(subs)]
    assert sorted(sent["target"] for sent in document["sent"]) == sorted(recipients)
    assert Counter(r for received in smtp.received for r in received.rcpt_tos) == Counter(recipients)
    assert took < 60, took  # a hang guard, not a benchmark


def test_the_render_child_imports_neither_the_http_client_nor_the_scheduler():
    """What the child imports is its baseline memory, paid on every large pass (issue 21: 50,000
    subscriptions under 400 MB): httpx and APScheduler were 10 MB of it, for code it never runs."""
    probe = ("import sys; import digestbot.render.apart; "
             "print(sorted(m for m in ('httpx', 'apscheduler', 'sqlalchemy', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert out.strip() == "[]"
