"""Rendering apart: a large send pass renders its digests in a child process of its own.

Why: a send pass is two kinds of work in one interpreter. The pass's thread renders (Jinja, highlighting:
CPU); the sender threads mostly wait for the mail server, but each of their 4-5 exchanges per message
needs the interpreter back (the GIL) to go on, and gets it only when the rendering thread lets go. Measured
at 5,000 one-recipient digests against a local sink: a sender alone sends a message every 1.9 ms, beside
the rendering thread every 3.1 ms, though that thread needs only 1.1 ms a digest. In a child process the
rendering runs on another core and the senders have the interpreter nearly to themselves.

What crosses: chunks of RenderJobs (the subscription, its matches and what make_digest needs, pickled
once per chunk) one way, a Content or an error text per job the other. The child builds its own Renderer
from the same templates folder, keeps one Paper per paper key (so its item cache works as the pass's
does, render/__init__.py `_item`), and renders exactly what Contents would have rendered in-process
(`render_content`). For an email it also builds the part every recipient shares (email_wire.premake):
with one recipient per subscription that was the senders' largest piece of CPU work.

The child is a plain `python -c` with one socket to the pass (multiprocessing's Connection: pickles with a
length in front). Not a process pool: a pool's queues start multiprocessing's resource tracker, a third
process of 14 MB, and `spawn` re-imports the command's main script, which for the `digestbot` console
script is the whole CLI (about 40 MB more). The child answers chunks in the order they came, so each
answer is the oldest waiting future's. Its stdout is /dev/null (the parent's may be `--json` output) and
it ignores Ctrl-C (the pass decides: it tells the child to exit, and the child also exits when its socket
ends, as when the pass dies).

A small pass (fewer than APART_FROM digests) renders in-process: starting the child costs ~0.5 s of CPU
and ~45 MB. Until the child is ready the pass renders its batches itself, so the first messages never wait
for it to start. If the child dies or cannot start, the chunks it had are rendered in-process (`Contents`
falls back), and the pass goes on in-process: rendering apart is a speed-up, never a way for a digest to fail.
"""
from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections import deque
from concurrent.futures import Future, wait
from dataclasses import replace
from datetime import datetime
from email.headerregistry import Address
from multiprocessing.connection import Connection
from pathlib import Path

from ..channels import email_wire
from ..config import Config
from ..digest import list_id
from ..models import Match, Paper
from . import Renderer
from .content import Content, RenderJob, render_content

log = logging.getLogger(__name__)
APART_FROM = 2_000  # digests due in a pass from which it renders apart (when the machine has a second core)
CHUNK = 10  # jobs per round trip to the child: few enough that the first message waits little
# The child yields the CPU to the senders: each of their exchanges needs a core the moment the server
# answers, the rendering can wait a moment (on two busy cores, about 5% more messages a second).
NICENESS = 10
READY_WAIT = 0.0  # seconds a batch waits for the child to be ready before it is rendered in-process instead
PYTHON = sys.executable  # the child's interpreter
STOP_WAIT = 10.0  # seconds `close` waits for the child to finish its chunk and exit before killing it
# The child's program: this process's import path (the same digestbot), then `serve` on the inherited socket.
PROGRAM = "import sys; sys.path[:] = sys.argv[2:]; from digestbot.render.apart import serve; serve(int(sys.argv[1]))"
Answer = list[Content | str]  # per job of a chunk: its Content, or the text of its error
END = (None, None)  # the last message to the child: exit


def worth_it(due: int) -> bool:
    """Whether a pass with `due` digests renders apart: large enough, and a core to spare."""
    return due >= APART_FROM and (os.cpu_count() or 1) > 1


class ChildGone(Exception):
    """The render child exited (killed, out of memory) or broke its socket: what it had is not coming."""


class RenderProcess:
    """The child process of one send pass, and the two threads that write its chunks and read its answers."""

    def __init__(self, config: Config, templates: Path | None, now: datetime, secret: bytes | None):
        root = logging.getLogger()  # the child logs as this process does (cli.configure_logging), to stderr
        formatter = next((h.formatter for h in root.handlers if type(h) is logging.StreamHandler), None)
        # The settings without the subscriptions (each job brings its own): at 50,000 they were 100 MB there.
        settings = replace(config, subscriptions=[], topics={}, schedules={}, sources=[], text="")
        ours, theirs = socket.socketpair()
        try:  # raises when the child cannot start (its Python gone): Contents renders in-process then
            self.process = subprocess.Popen([PYTHON, "-c", PROGRAM, str(theirs.fileno()), *sys.path],
                                            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.ready: Future[None] = Future()  # done once the child has built its Renderer
        self._waiting: deque[Future[Answer]] = deque()  # submitted, not answered yet: oldest first
        self._gone: ChildGone | None = None
        self._lock = threading.Lock()
        # what the writer sends: the settings first, then each chunk with its future, then END
        self._outbox: queue.SimpleQueue[tuple[Future[Answer] | None, object]] = queue.SimpleQueue()
        self._outbox.put((None, (settings, templates, now, secret, root.level, formatter)))
        self._writer = threading.Thread(target=self._write, name="render-apart-writer", daemon=True)
        self._reader = threading.Thread(target=self._read, name="render-apart-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    def started(self) -> bool:
        """Whether the child is ready (or gone: `submit` then says so); waits READY_WAIT for it."""
        wait([self.ready], timeout=READY_WAIT)
        return self.ready.done()

    def submit(self, jobs: list[RenderJob]) -> Future[Answer]:
        """The chunk's answer, later; raises ChildGone at once when the child is known to be gone."""
        future: Future[Answer] = Future()
        with self._lock:
            if self._gone is not None:
                raise self._gone
        self._outbox.put((future, jobs))
        return future

    def close(self) -> None:
        """End the child: what it has not been sent yet is dropped; it finishes its chunk and exits."""
        stopped = ChildGone("the render child was stopped")
        try:
            while True:
                future, _ = self._outbox.get_nowait()
                if future is not None:
                    future.set_exception(stopped)
        except queue.Empty:
            pass
        self._outbox.put(END)
        self._writer.join()
        try:
            self.process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join()
        self.connection.close()
        self._fail(stopped)  # anything still waiting (a pass that ended early)

    def _write(self) -> None:
        """Send the settings, then each chunk in turn, then None (the child's word to exit)."""
        while True:
            future, message = self._outbox.get()
            try:
                data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # a chunk that does not pickle fails alone (Contents renders it here)
                if future is None:  # the settings: no child without them
                    self.process.kill()
                    self._fail(ChildGone(f"the settings could not be sent to the render child ({exc})"))
                    return
                future.set_exception(exc)
                continue
            if future is not None:
                with self._lock:
                    if self._gone is not None:
                        future.set_exception(self._gone)
                        continue
                    self._waiting.append(future)  # before it is sent: the reader finds the future of each answer
            try:
                self.connection.send_bytes(data)
            except OSError:  # the child is gone: the reader says so (it reads the end of the socket)
                return
            if message is None:
                return

    def _read(self) -> None:
        """The child's first word (ready), then its answers, in the order the chunks were sent."""
        try:
            self.connection.recv()
            self.ready.set_result(None)
            while True:
                answer = self.connection.recv()
                with self._lock:
                    future = self._waiting.popleft()
                future.set_result(answer)
        except (EOFError, OSError) as exc:  # its end closed: it exited (a reset when it left data unread)
            try:
                gone = ChildGone(f"the render child exited ({_exit(self.process.wait(timeout=STOP_WAIT))})")
            except subprocess.TimeoutExpired:  # alive, but its socket is not: it is stopped by `close`
                gone = ChildGone(f"the render child's socket broke ({exc})")
            self._fail(gone)

    def _fail(self, gone: ChildGone) -> None:
        with self._lock:
            self._gone = self._gone or gone
            waiting, self._waiting = list(self._waiting), deque()
        if not self.ready.done():
            self.ready.set_exception(gone)
        for future in waiting:
            future.set_exception(gone)


def _exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"status {code}"


# The child's side.

def serve(fd: int) -> None:
    """The child's life: set up from the first message, then answer chunks until told to stop (None) or
    the socket ends (the pass died)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the pass, which then closes the socket
    os.nice(NICENESS)
    connection = Connection(fd)
    child = _Child(*connection.recv())
    connection.send(None)  # ready
    while True:
        try:
            jobs = connection.recv()
        except EOFError:
            return
        if jobs is None:
            return
        connection.send(child.render(jobs))


class _Child:
    """The child's Renderer and the pass's fixed arguments, and one Paper per paper key."""

    def __init__(self, config: Config, templates: Path | None, now: datetime, secret: bytes | None, level: int,
                 formatter: logging.Formatter | None):
        handler = logging.StreamHandler()
        handler.setFormatter(formatter)
        logging.basicConfig(level=level, handlers=[handler])
        self.config, self.renderer, self.now, self.secret = config, Renderer(templates), now, secret
        self.sender: Address | None = config.email.sender_address if config.email else None
        self.papers: dict[str, Paper] = {}

    def render(self, jobs: list[RenderJob]) -> Answer:
        """Each job's Content, or the text of the error that made it fail (an exception may not pickle)."""
        out: Answer = []
        for job in jobs:
            try:
                job = replace(job, matches=[self._same_paper(m) for m in job.matches])
                content = render_content(self.config, self.renderer, self.now, self.secret, job)
                if job.channel == "email" and self.sender is not None:  # the email's body too (module notes)
                    email_wire.premake(content.message, list_id(self.config, job.sub), self.sender)
                out.append(content)
            except Exception as exc:  # the digest's own failure, reported where it is sent (sending.py)
                out.append(_failure(exc))
        return out

    def _same_paper(self, match: Match) -> Match:
        """The match with the child's one Paper of that key (the item cache is keyed by the paper object)."""
        paper = self.papers.setdefault(match.paper.key, match.paper)
        return match if paper is match.paper else Match(match.subscription_id, paper, match.score, match.hits)


def _failure(exc: Exception) -> str:
    """The error as text, with the template line it came from (Jinja puts the template's frames in the
    traceback): the text is all that comes back from the child."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f" (at {f.filename}:{f.lineno})" for f in reversed(frames) if f.filename.endswith(".j2")), "")
    return f"{type(exc).__name__}: {exc}{where}"
