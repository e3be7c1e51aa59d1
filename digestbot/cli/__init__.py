"""The command line: it parses arguments, asks the library (app.App) and prints.

Every command is a thin function over the library; `print` lives here and nowhere else.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__, config as config_module, pipeline
from ..app import App
from ..errors import ConfigError, DigestbotError
from . import ops, subs

log = logging.getLogger("digestbot")


def default_config() -> str:
    return os.environ.get("DIGESTBOT_CONFIG") or "config.toml"


def load_config(args: argparse.Namespace) -> config_module.Config:
    return config_module.load(args.config)


def open_app(args: argparse.Namespace) -> App:
    return App.from_config(args.config)


# --- commands --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    app = open_app(args)
    if not args.once:
        print(f"digestbot {__version__}: {len(app.config.sources)} sources, {len(app.config.subscriptions)} "
              f"subscriptions; Ctrl-C to stop", file=sys.stderr)
        app.serve()
        return 0
    polls, sends = app.run_once(send=not args.no_send)
    report_run(polls, sends, sent_anything=not args.no_send)
    return 1 if any(p.error for p in polls) or sends.failed else 0


def report_run(polls: list[pipeline.PollResult], sends: pipeline.SendResult, *, sent_anything: bool) -> None:
    for p in polls:
        if p.error:
            print(f"{p.source}: FAILED: {p.error}")
        else:
            print(f"{p.source}: {p.seen} papers listed, {p.new} new, {p.matched} matches")
    if not sent_anything:
        print("--no-send: recorded everything, sent nothing")
    for name, channel, target, count in sends.sent:
        print(f"sent {name!r}: {count} papers to {target} ({channel})")
    for name, target, error in sends.failed:
        print(f"FAILED {name!r} to {target}: {error}")
    if sends.deferred:
        print(f"{sends.deferred} digests not attempted (their channel is down); they stay pending")
    if sent_anything and not sends.sent and not sends.failed:
        print("nothing due to send")


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args)
    for problem in config_module.check_secrets(config):
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{config.path}: OK ({len(config.sources)} sources, {len(config.topics)} topics, "
          f"{len(config.subscriptions)} subscriptions)")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Render a digest to files; sends nothing and changes no ledger row."""
    for path in open_app(args).preview(args.name, Path(args.out), days=args.days):
        print(path)
    return 0


def cmd_new_config(args: argparse.Namespace) -> int:
    from ..bundled import write_example_config

    path = Path(args.path or args.config)
    written = write_example_config(path, force=args.force)
    shown = shlex.quote(str(path))
    print(f"wrote {written}: the example config, every option commented. Next:\n"
          f"  1. edit it: your sources, topics and subscriptions; delete [email] / [slack] to write the digests "
          f"to the outbox folder instead\n"
          f"  2. export the environment variables it names for secrets (check warns about those not set)\n"
          f"  3. digestbot -c {shown} check\n"
          f"  4. digestbot -c {shown} run --once --no-send   # remember what is listed today, send nothing\n"
          f"  5. digestbot -c {shown} run")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    return run_demo(Path(args.dir), report_run)


# --- parser -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digestbot", description="Watch paper listings; send each subscriber the new papers on their topics.")
    parser.add_argument("-c", "--config", default=default_config(),
                        help="config file (default: $DIGESTBOT_CONFIG, then ./config.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"digestbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="poll sources and send digests (daemon; --once for one pass)")
    run.add_argument("--once", action="store_true", help="poll every source once, send what is due, exit")
    run.add_argument("--no-send", action="store_true", help="with --once: record what is listed now, send nothing")
    run.set_defaults(func=cmd_run)

    sub.add_parser("check", help="validate the config file").set_defaults(func=cmd_check)
    ops.register(sub)

    preview = sub.add_parser("preview", help="render a subscription's next digest to files (sends nothing)")
    preview.add_argument("name", help="the subscription's name or id")
    preview.add_argument("--days", type=float,
                         help="instead: what the stored papers first seen in the last N days would give")
    preview.add_argument("--out", default="digestbot-preview",
                         help="folder for digest.html, digest.txt and slack.json (default: digestbot-preview)")
    preview.set_defaults(func=cmd_preview)

    subs.register(sub)

    new = sub.add_parser("new-config", help="write a starter config (the example, every option commented)")
    new.add_argument("path", nargs="?", help="where (default: the -c config: $DIGESTBOT_CONFIG, then ./config.toml)")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    new.set_defaults(func=cmd_new_config)

    demo = sub.add_parser("demo", help="the whole job on bundled sample listings, offline")
    demo.add_argument("--dir", default="digestbot-demo", help="where to put the demo database and outbox")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    daemon = args.command == "run" and not args.once
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO if daemon else logging.WARNING,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:
        for noisy in ("httpx", "httpcore", "apscheduler.executors", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack_sdk stays at WARNING even with -v: its DEBUG lines print each request's URL and body (an
    # incoming webhook's URL is its secret; bodies are subscribers' digests) and its INFO retry lines
    # print the full webhook URL. A redacting filter would have to know every shape of those messages.
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except DigestbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
