"""The command line: it parses arguments, asks the library (app.App) and prints.

Every command is a thin function over the library; `print` lives here and nowhere else. Global options
(-c, -v, -q) go before or after the command; exit codes are in common.EXIT_CODES (and `digestbot --help`).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__, pipeline
from .. import config as config_module
from ..app import App
from ..channels import outbox_channels
from ..errors import ConfigError, DigestbotError
from ..logformat import log_formatter
from . import feedback, ops, subs
from .common import (
    EXIT_CLOSED_PIPE,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_command,
    add_global_options,
    add_json_option,
    emit_json,
    examples_text,
    print_help_of,
    silence_stdout,
)

log = logging.getLogger("digestbot")


def load_config(args: argparse.Namespace) -> config_module.Config:
    return config_module.load(args.config)


# --- commands --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.json and not args.once:
        raise UsageError("--json needs --once (the daemon logs instead)")
    if args.send_backlog and args.no_send:
        raise UsageError("--send-backlog and --no-send contradict each other")
    app = App.from_config(args.config, send_backlog=args.send_backlog)  # the first run creates the database
    if not args.once:
        if args.verbosity != "quiet":
            doing = "recording only (--no-send): nothing is sent" if args.no_send else "Ctrl-C to stop"
            print(f"digestbot {__version__}: {len(app.config.sources)} sources, {len(app.config.subscriptions)} "
                  f"subscriptions; {doing}", file=sys.stderr)
        app.serve(send=not args.no_send)
        return EXIT_OK
    polls, sends = app.run_once(send=not args.no_send)
    if args.json:
        emit_json(run_document(polls, sends, sent_anything=not args.no_send))
    else:
        report_run(polls, sends, sent_anything=not args.no_send, outbox=outbox_channels(app.config))
    return EXIT_FAILED if any(p.error for p in polls) or sends.failed else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from ..web.app import serve

    serve(args.config, log_level="warning" if args.verbosity == "quiet" else "info")
    return EXIT_OK


def report_run(polls: list[pipeline.PollResult], sends: pipeline.SendResult, *, sent_anything: bool,
               outbox: frozenset[str] = frozenset()) -> None:
    """`outbox`: the ledger channels the config writes to the outbox folder: their digests were written, not
    sent."""
    for p in polls:
        if p.error:
            print(f"{p.source}: FAILED: {p.error}")
        elif p.polled_by_another:
            print(f"{p.source}: polled by another digestbot process (it holds the poll lead); not polled again here")
        else:
            print(f"{p.source}: {p.seen} papers listed, {p.new} new, {p.matched} matches")
    if polls and all(p.polled_by_another for p in polls):
        print("every source was polled by another digestbot process sharing this database: this run only sent "
              "(nothing is wrong)")
    backlog = [p for p in polls if p.backlog]
    if backlog:
        print(f"first poll of a new database: recorded {sum(p.new for p in backlog)} papers as already seen and "
              f"sent none of their {sum(p.matched for p in backlog)} matches (`run --send-backlog` sends a first "
              f"poll's matches); papers first seen from now on are sent")
    if not sent_anything:
        failed = [p for p in polls if p.error]
        if polls and len(failed) == len(polls):
            print("--no-send: every source failed, so nothing was recorded; sent nothing")
        elif failed:
            print(f"--no-send: recorded what {len(polls) - len(failed)} of {len(polls)} sources listed "
                  f"({', '.join(p.source for p in failed)} failed); sent nothing")
        else:
            print("--no-send: recorded everything, sent nothing")
    for sub_id, channel, target, count in sends.cancelled:
        print(f"cancelled {count} queued for {sub_id!r} to {target} ({channel}): no longer in the config")
    for name, channel, target, count in sends.sent:
        if channel in outbox:
            print(f"wrote {name!r}: {count} papers for {target} to the outbox ({channel}; not sent)")
        else:
            print(f"sent {name!r}: {count} papers to {target} ({channel})")
    for name, target, error in sends.failed:
        print(f"FAILED {name!r} to {target}: {error}")
    if sends.deferred:
        print(f"{sends.deferred} digests not attempted (their channel is down); they stay pending")
    if sent_anything and not sends.sent and not sends.failed:
        print("nothing due to send")


def run_document(polls: list[pipeline.PollResult], sends: pipeline.SendResult, *,
                 sent_anything: bool) -> dict[str, object]:
    """`run --once --json`: what report_run prints, as data (README, "Commands")."""
    return {
        "sources": [{"name": p.source, "listed": p.seen, "new": p.new, "matches": p.matched, "error": p.error}
                    for p in polls],
        "sent": [{"subscription": name, "channel": channel, "target": target, "papers": count}
                 for name, channel, target, count in sends.sent],
        "failed": [{"subscription": name, "target": target, "error": error} for name, target, error in sends.failed],
        "deferred": sends.deferred,
        "cancelled": [{"subscription": sub_id, "channel": channel, "target": target, "queued": count}
                      for sub_id, channel, target, count in sends.cancelled],
        "no_send": not sent_anything,
        "backlog": [p.source for p in polls if p.backlog],  # first polls of a new database: recorded, not sent
        # Sources another process polled (it held the poll leader lock, or is a daemon that leads): not errors
        "polled_by_another": [p.source for p in polls if p.polled_by_another],
        "seconds": _phases(polls, sends),
    }


def _phases(polls: list[pipeline.PollResult], sends: pipeline.SendResult) -> dict[str, float]:
    """Wall seconds by phase, over every source: collect (fetch + parse), match, record (papers, matches,
    their ledger rows; the commit), open (digests whose period has come), send (claim, render, send, record)."""
    phases = {"collect": 0.0, "match": 0.0, "record": 0.0, "open": 0.0, "send": 0.0}
    for part in [*(p.seconds for p in polls), sends.seconds]:
        for phase, took in part.items():
            phases[phase] += took
    return {phase: round(took, 3) for phase, took in phases.items()}


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args)
    except ConfigError as exc:
        if not args.json:
            raise
        emit_json({"config": str(args.config), "ok": False, "problems": exc.problems, "warnings": []})
        return EXIT_USAGE
    warnings = config_module.check_secrets(config) + config_module.check_queries(config)
    if args.json:
        emit_json({"config": str(config.path), "ok": True, "problems": [], "warnings": warnings,
                   "sources": len(config.sources), "topics": len(config.topics),
                   "subscriptions": len(config.subscriptions)})
        return EXIT_OK
    for problem in warnings:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{config.path}: OK ({len(config.sources)} sources, {len(config.topics)} topics, "
          f"{len(config.subscriptions)} subscriptions)")
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    """Render a digest to files; sends nothing and changes no ledger row."""
    config = load_config(args)
    config.subscription(args.name)  # an unknown name is a usage error, whether or not a database exists
    for path in App.from_config(config, create=False).preview(args.name, Path(args.out), days=args.days):
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

    return run_demo(Path(args.dir), report_run, reset=args.reset)


# --- parser -----------------------------------------------------------------------------------------

MAIN_EXAMPLES = [
    "digestbot new-config && digestbot check     # a starter config, then validate it",
    "digestbot run --once --no-send              # remember what is listed today, send nothing",
    "digestbot run                               # the daemon",
    "digestbot status -c /etc/digestbot.toml     # global options go before or after the command",
    "digestbot demo                              # the whole job offline, on sample listings",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digestbot", description="Watch paper listings; send each subscriber the new papers on their topics.",
        epilog=examples_text(MAIN_EXAMPLES) + "\n\n`digestbot COMMAND --help` shows a command's options and "
        "examples; `digestbot` alone shows this help.\n\n" + EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")  # listed first in --help
    add_global_options(parser, with_defaults=True)
    parser.add_argument("--version", action="version", version=f"digestbot {__version__}",
                        help="print the version and exit")
    parser.set_defaults(func=print_help_of(parser))

    run = add_command(sub, "run", help="poll sources and send digests (daemon; --once for one pass)", examples=[
        "digestbot run                          # the daemon: polls and sends on schedule until stopped",
        "digestbot run --once                   # one pass: poll every source, send what is due, exit",
        "digestbot run --once --no-send         # record what is listed now without sending it",
        "digestbot run --send-backlog           # a new database: send what the first poll finds too",
        "digestbot run --once --json | jq .failed"])
    run.add_argument("--once", action="store_true", help="poll every source once, send what is due, exit")
    run.add_argument("--no-send", action="store_true",
                     help="record what is listed, send nothing (with --once: one pass; without: a daemon that only "
                          "polls and records)")
    run.add_argument("--send-backlog", action="store_true",
                     help="on a new database, send the matches of each source's first poll too (by default that "
                          "poll only records what is listed: no flood of last week's papers)")
    add_json_option(run, "with --once, what each source listed, what was sent and what failed")
    run.set_defaults(func=cmd_run)

    serve = add_command(sub, "serve", help="serve readers' one-click unsubscribe links on [web] listen (HTTP)",
                        examples=["digestbot serve                  # behind a TLS reverse proxy at bot.public_url",
                                  "curl -s 127.0.0.1:8080/healthz   # {\"database\": \"ok\", ...}"])
    serve.set_defaults(func=cmd_serve)

    check = add_command(sub, "check", help="validate the config file", examples=[
        "digestbot check", "digestbot check -c /etc/digestbot.toml --json"])
    add_json_option(check, "whether it is valid, its problems and warnings")
    check.set_defaults(func=cmd_check)
    ops.register(sub)

    preview = add_command(sub, "preview", help="render a subscription's next digest to files (sends nothing)",
                          examples=["digestbot preview alice --out /tmp/p   # then open /tmp/p/digest.html",
                                    "digestbot preview alice --days 7       # what the last week would give"])
    preview.add_argument("name", help="the subscription's name or id")
    preview.add_argument("--days", type=float,
                         help="instead: what the stored papers first seen in the last N days would give")
    preview.add_argument("--out", default="digestbot-preview",
                         help="folder for digest.html, digest.txt and slack.json (default: digestbot-preview)")
    preview.set_defaults(func=cmd_preview)

    subs.register(sub)
    feedback.register(sub)

    new = add_command(sub, "new-config", help="write a starter config (the example, every option commented)",
                      examples=["digestbot new-config                    # ./config.toml (or $DIGESTBOT_CONFIG)",
                                "digestbot new-config /etc/digestbot.toml --force"])
    new.add_argument("path", nargs="?", help="where (default: the -c config: $DIGESTBOT_CONFIG, then ./config.toml)")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    new.set_defaults(func=cmd_new_config)

    demo = add_command(sub, "demo", help="the whole job on bundled sample listings, offline",
                       examples=["digestbot demo", "digestbot demo --dir /tmp/demo   # then: ls /tmp/demo/outbox"])
    demo.add_argument("--dir", default="digestbot-demo",
                      help="the playground: its config, listings, database and outbox (default: digestbot-demo)")
    demo.add_argument("--reset", action="store_true",
                      help="start a playground over even if its config was edited (the edits are lost)")
    demo.set_defaults(func=cmd_demo)
    return parser


def configure_logging(args: argparse.Namespace) -> None:
    daemon = (args.func is cmd_run and not args.once) or args.func is cmd_serve
    level = {"verbose": logging.DEBUG, "quiet": logging.WARNING}.get(
        args.verbosity, logging.INFO if daemon else logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(args.log_format))
    logging.basicConfig(level=level, handlers=[handler])
    if args.verbosity != "verbose":
        # APScheduler's own start-up lines ("Adding job tentatively", "Added job ... to job store",
        # "Scheduler started") are for -v: the daemon says in one line what it scheduled (daemon.py).
        for noisy in ("httpx", "httpcore", "apscheduler", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # slack_sdk stays at WARNING even with -v: its DEBUG lines print each request's URL and body (an
    # incoming webhook's URL is its secret; bodies are subscribers' digests) and its INFO retry lines
    # print the full webhook URL. A redacting filter would have to know every shape of those messages.
    logging.getLogger("slack_sdk").setLevel(logging.WARNING)


def run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args)
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    except DigestbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """The `digestbot` program: the exit code (common.EXIT_CODES); argparse itself exits 2 on bad usage."""
    try:
        try:
            return run_command(argv)
        finally:
            sys.stdout.flush()  # here, so that a closed pipe is noticed where it can be handled, not at exit
    except BrokenPipeError:
        # stdout's reader has gone (`digestbot papers | head -1`). digestbot's own network code turns socket
        # errors into its errors, so a BrokenPipeError reaching here is stdout's.
        silence_stdout()
        return EXIT_CLOSED_PIPE
