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

A small pass (fewer than APART_FROM digests) renders in-process: starting the child costs ~0.5 s of CPU
and about 60 MB (the child ~45 MB at start, multiprocessing's resource tracker 14 MB). Until the child is
ready the pass renders its batches itself, so the first messages never wait for it to start. If the child dies
or cannot start, the chunks it had are rendered in-process (`Contents` falls back), and the pass goes on
in-process: rendering apart is a speed-up, never a way for a digest to fail.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import replace
from datetime import datetime
from email.headerregistry import Address
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


def worth_it(due: int) -> bool:
    """Whether a pass with `due` digests renders apart: large enough, and a core to spare."""
    return due >= APART_FROM and (os.cpu_count() or 1) > 1


class RenderProcess:
    """The child process of one send pass (a one-worker process pool: `spawn`, since the pass has threads)."""

    def __init__(self, config: Config, templates: Path | None, now: datetime, secret: bytes | None):
        root = logging.getLogger()  # the child logs as this process does (cli.configure_logging), to stderr
        formatter = next((h.formatter for h in root.handlers if type(h) is logging.StreamHandler), None)
        # The settings without the subscriptions (each job brings its own): at 50,000 they were 100 MB there.
        settings = replace(config, subscriptions=[], topics={}, schedules={}, sources=[], text="")
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start, initargs=(settings, templates, now, secret,
                                                                      root.level, formatter))
        # The child starts now (a pool starts its process at its first job); done once it is ready.
        self.ready = self.pool.submit(_ready)

    def started(self) -> bool:
        """Whether the child is ready (or failed to start: `submit` then says so); waits READY_WAIT for it."""
        wait([self.ready], timeout=READY_WAIT)
        return self.ready.done()

    def submit(self, jobs: list[RenderJob]) -> Future[list[Content | str]]:
        return self.pool.submit(_render_chunk, jobs)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# The child's side: its Renderer and the pass's fixed arguments, set once by `_start`.
_child: tuple[Config, Renderer, datetime, bytes | None, Address | None] | None = None
_papers: dict[str, Paper] = {}


def _start(config: Config, templates: Path | None, now: datetime, secret: bytes | None, level: int,
           formatter: logging.Formatter | None) -> None:
    global _child
    os.nice(NICENESS)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler])
    _child = (config, Renderer(templates), now, secret, config.email.sender_address if config.email else None)


def _ready() -> None:
    """Nothing: the first job, which makes the pool start its process."""


def _render_chunk(jobs: list[RenderJob]) -> list[Content | str]:
    """Each job's Content, or the text of the error that made it fail (an exception may not pickle)."""
    assert _child is not None  # set by the pool's initializer
    config, renderer, now, secret, sender = _child
    out: list[Content | str] = []
    for job in jobs:
        matches = [_same_paper(m) for m in job.matches]
        try:
            content = render_content(config, renderer, now, secret, replace(job, matches=matches))
            if job.channel == "email" and sender is not None:  # the email's body too (module notes)
                email_wire.premake(content.message, list_id(config, job.sub), sender)
            out.append(content)
        except Exception as exc:  # the digest's own failure, reported where it is sent (sending.py)
            out.append(_failure(exc))
    return out


def _failure(exc: Exception) -> str:
    """The error as text, with the template line it came from (Jinja puts the template's frames in the
    traceback): the text is all that comes back from the child."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = next((f" (at {f.filename}:{f.lineno})" for f in reversed(frames) if f.filename.endswith(".j2")), "")
    return f"{type(exc).__name__}: {exc}{where}"


def _same_paper(match: Match) -> Match:
    """The match with the child's one Paper of that key (the item cache is keyed by the paper object)."""
    paper = _papers.setdefault(match.paper.key, match.paper)
    return match if paper is match.paper else Match(match.subscription_id, paper, match.score, match.hits)

