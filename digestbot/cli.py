"""The command line, and the only composition root: it builds config, store, http, matcher, channels.

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

from . import (__version__, cli_ops, cli_subs, config as config_module, dbstate, pipeline, private,
               store as store_module)
from .channels import opener as channel_opener
from .errors import ConfigError, DigestbotError
from .http import Http
from .matching import Interest, Matcher
from .matching.similar import SimilarityMatcher, SimilarTopic
from .render import Renderer
from .store import Store

log = logging.getLogger("digestbot")
SIMILARITY_CORPUS = 5000  # recent papers whose word frequencies weigh the `like` topics
RARITY_SAMPLE = 2000  # recent papers whose word frequencies pick the matcher's index keys


def default_config() -> str:
    return os.environ.get("DIGESTBOT_CONFIG") or "config.toml"


def load_config(args: argparse.Namespace) -> config_module.Config:
    return config_module.load(args.config)


def interests(config: config_module.Config) -> list[Interest]:
    """What the query matcher evaluates. A subscription whose only interests are `like` topics is left
    out: an empty query would otherwise mean "every paper"; the similarity matcher serves it."""
    result = []
    for sub in config.subscriptions:
        topics = tuple((t, config.topics[t].query) for t in sub.topics if config.topics[t].query)
        if sub.query or topics or not sub.topics:
            result.append(Interest(sub.id, sub.query, topics))
    return result


def build_matcher(config: config_module.Config, store: Store) -> Matcher | SimilarityMatcher:
    # Rare words make selective index keys; recent papers say which words are rare (faster only:
    # the matches never depend on the sample).
    matcher = Matcher(interests(config), sample=store.papers(limit=RARITY_SAMPLE))
    like = [SimilarTopic(name, tuple(t.like), t.min_similarity) for name, t in config.topics.items() if t.like]
    if not like:
        return matcher
    users = {t.name: [s.id for s in config.subscriptions if t.name in s.topics] for t in like}
    return SimilarityMatcher(matcher, like, users, corpus=lambda: store.papers(limit=SIMILARITY_CORPUS),
                             examples=store.papers_by_keys)


def matcher_of(config: config_module.Config, store: Store, name: str) -> Matcher | SimilarityMatcher:
    """The matcher of one subscription alone, built as the daemon builds its own (queries, topics and
    `like` topics): what `subs test` and `preview --days` run over the stored papers, so they agree."""
    return build_matcher(dataclasses.replace(config, subscriptions=[config.subscription(name)]), store)


def open_store(config: config_module.Config) -> Store:
    """The database; created on a new installation, refused when lost or damaged (see dbstate)."""
    url = config.database_url
    if not _exists(url):
        since = dbstate.created_at(config.path, url)
        if since is not None:
            raise DigestbotError(
                f"the database {dbstate.shown(url)} is missing, but digestbot created it on {since} (recorded in "
                f"{dbstate.marker_path(config.path)}): restore it from a backup; starting from an empty one would "
                f"send every paper still listed again. To start over on purpose: `digestbot init`")
        log.warning("new installation: creating the database %s", dbstate.shown(url))
        return create_store(config)
    if never_used(config):
        log.warning("the database %s is an empty file (a first run was stopped while creating it): creating its "
                    "tables now", dbstate.shown(url))
        return create_store(config)
    return Store.open_existing(url, busy_timeout=config.bot.busy_timeout)


def never_used(config: config_module.Config) -> bool:
    """An empty SQLite file that no digestbot finished creating (older versions killed while creating it
    left one). Emptied after use, the marker remembers it: then it is refused like any damaged file."""
    path = store_module._sqlite_path(config.database_url)
    return (path is not None and store_module.is_blank(Path(path))
            and dbstate.created_at(config.path, config.database_url) is None)


def _exists(url: str) -> bool:
    path = store_module._sqlite_path(url)
    if path is not None:
        return Path(path).exists()
    with Store(url) as store:  # other databases: missing tables mean a missing database
        return store.has_tables()


def create_store(config: config_module.Config) -> Store:
    if path := store_module._sqlite_path(config.database_url):
        private.make_folder(Path(path).parent)  # a new folder for subscriber data
    store = Store(config.database_url, busy_timeout=config.bot.busy_timeout)
    store.create_tables()
    dbstate.record(config.path, config.database_url)
    return store


def build_context(config: config_module.Config, http: Http | None = None,
                  store: Store | None = None) -> pipeline.Context:
    templates = config.resolve(config.bot.templates) if config.bot.templates else None
    store = store or open_store(config)
    return pipeline.Context(config=config, store=store, http=http or Http(),
                            matcher=build_matcher(config, store), renderer=Renderer(templates),
                            open_channel=channel_opener(config))


def now() -> datetime:
    return datetime.now(timezone.utc)


# --- commands --------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args)
    ctx = build_context(config)
    if not args.once:
        from . import scheduler

        print(f"digestbot {__version__}: {len(config.sources)} sources, {len(config.subscriptions)} "
              f"subscriptions; Ctrl-C to stop", file=sys.stderr)
        scheduler.serve(scheduler.Live(ctx, lambda new: build_context(new, ctx.http, ctx.store)))
        return 0
    polls, sends = pipeline.run_once(ctx, now(), send=not args.no_send)
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
    from .preview import preview

    config = load_config(args)
    store = open_store(config)
    matcher = matcher_of(config, store, args.name) if args.days is not None else None
    paths = preview(config, store, args.name, now(), days=args.days, out=Path(args.out), matcher=matcher)
    for path in paths:
        print(path)
    return 0


def cmd_new_config(args: argparse.Namespace) -> int:
    from .bundled import write_example_config

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
    from .demo.run import run_demo

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
    cli_ops.register(sub)

    preview = sub.add_parser("preview", help="render a subscription's next digest to files (sends nothing)")
    preview.add_argument("name", help="the subscription's name or id")
    preview.add_argument("--days", type=float,
                         help="instead: what the stored papers first seen in the last N days would give")
    preview.add_argument("--out", default="digestbot-preview",
                         help="folder for digest.html, digest.txt and slack.json (default: digestbot-preview)")
    preview.set_defaults(func=cmd_preview)

    cli_subs.register(sub)

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
