"""The command line, and the only composition root: it builds config, store, http, matcher, channels.

Every command is a thin function over the library; `print` lives here and nowhere else.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, cli_subs, config as config_module, dbstate, pipeline, store as store_module
from .channels import Channel
from .channels.email import SmtpChannel
from .channels.file import FileChannel
from .channels.slack import SlackChannel
from .channels.slack_webhook import SlackWebhookChannel
from .errors import ConfigError, DigestbotError
from .http import Http
from .matching import Interest, Matcher
from .matching.similar import SimilarityMatcher, SimilarTopic
from .render import Renderer
from .ledger import Ledger
from .sources import SourceOptions
from .store import SourceState, Store

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


def open_store(config: config_module.Config) -> Store:
    """The database; created on a new installation, refused when lost or damaged (see dbstate)."""
    url = config.database_url
    if not _exists(url):
        since = dbstate.created_at(config.path, url)
        if since is not None:
            raise DigestbotError(
                f"the database {url} is missing, but digestbot created it on {since} (recorded in "
                f"{dbstate.marker_path(config.path)}): restore it from a backup; starting from an empty one would "
                f"send every paper still listed again. To start over on purpose: `digestbot init`")
        log.warning("new installation: creating the database %s", url)
        return create_store(config)
    return Store.open_existing(url, busy_timeout=config.bot.busy_timeout)


def _exists(url: str) -> bool:
    path = store_module._sqlite_path(url)
    if path is not None:
        return Path(path).exists()
    with Store(url) as store:  # other databases: missing tables mean a missing database
        return store.has_tables()


def create_store(config: config_module.Config) -> Store:
    if path := store_module._sqlite_path(config.database_url):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    store = Store(config.database_url, busy_timeout=config.bot.busy_timeout)
    store.create_tables()
    dbstate.record(config.path, config.database_url)
    return store


def slack_webhooks(config: config_module.Config) -> dict[str, str]:
    urls = {}
    for sub in config.subscriptions:
        url = sub.slack_webhook or config.secret(sub.slack_webhook_env, f"subscription {sub.name!r} slack_webhook_env")
        if url:
            urls[sub.id] = url
    return urls


def channel_factory(config: config_module.Config):
    def open_channel(kind: str) -> Channel:
        if kind == "email" and config.email:
            e = config.email
            password = config.secret(e.password_env, "email.password_env")
            return SmtpChannel(e.host, e.port, e.security, e.sender_address, e.username, password, e.timeout)
        if kind == "slack" and config.slack:
            token = config.secret(config.slack.token_env, "slack.token_env")
            return SlackChannel(token, config.slack.base_url, min_interval=config.slack.min_interval)
        if kind == "slack_webhook":
            pace = config.slack.min_interval if config.slack else 1.0
            return SlackWebhookChannel(slack_webhooks(config), min_interval=pace)
        sender = config.email.sender_address if config.email else None
        return FileChannel(config.outbox, kind, sender)
    return open_channel


def build_context(config: config_module.Config, http: Http | None = None,
                  store: Store | None = None) -> pipeline.Context:
    templates = config.resolve(config.bot.templates) if config.bot.templates else None
    store = store or open_store(config)
    return pipeline.Context(config=config, store=store, http=http or Http(),
                            matcher=build_matcher(config, store), renderer=Renderer(templates),
                            open_channel=channel_factory(config))


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


def cmd_status(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = open_store(config)
    states = store.source_states()
    print(f"database: {store.url.split('///')[-1]}  papers: {store.count_papers()}")
    print("\nsources:")
    for options in config.sources:
        print_source_status(options, states.get(options.name), store.papers_from(options.name), now())
    print_deliveries(store)
    return 0


def print_deliveries(store: Store) -> None:
    ledger = Ledger(store)
    print("\ndigests (one per subscription, channel, recipient and period):")
    counts, papers = ledger.counts(), store.delivery_counts()
    if not counts:
        print("  none yet")
    for channel, c in sorted(counts.items()):
        oldest = f"; oldest waiting since {c.oldest_pending:%Y-%m-%d %H:%M} UTC" if c.oldest_pending else ""
        per_paper = ", ".join(f"{s} {papers.get((channel, s), 0)}" for s in ("pending", "sent", "failed"))
        print(f"  {channel:<14} pending {c.pending}, sending {c.sending}, sent {c.sent}, failed {c.failed} "
              f"(papers: {per_paper}){oldest}")
    for row in ledger.digests("failed"):
        print(f"  failed #{row.id}: {row.subscription} -> {row.target} ({row.channel}), {row.attempts} attempts: "
              f"{row.last_error}")
    retrying = [r for r in ledger.digests("pending") if r.last_error]
    for row in retrying:
        print(f"  retrying #{row.id}: {row.subscription} -> {row.target} ({row.channel}) at "
              f"{row.next_try:%Y-%m-%d %H:%M} UTC, {row.attempts} attempts so far: {row.last_error}")
    if retrying or ledger.digests("failed"):
        print("  (`digestbot retry` sends the pending ones now; `retry --failed` also the failed ones)")


def cmd_retry(args: argparse.Namespace) -> int:
    config = load_config(args)
    count = Ledger(open_store(config)).retry_now(now(), failed=args.failed)
    print(f"{count} digests are due now; `digestbot run --once` (or the running daemon within 5 minutes) sends them")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Create the database on purpose, also where a lost one was recorded (see dbstate)."""
    config = load_config(args)
    url = config.database_url
    try:
        Store.open_existing(url).close()
        print(f"{url}: already a digestbot database; nothing changed")
        return 0
    except DigestbotError as exc:
        path = store_module._sqlite_path(url)
        if path and Path(path).exists():
            if not args.force:
                print(f"error: {exc}\n(not touched: `digestbot init --force` moves it aside and starts empty)",
                      file=sys.stderr)
                return 1
            aside = store_module.set_aside(Path(path))
            print(f"moved the old database to {aside}")
    create_store(config).close()
    print(f"created {url}\nnext: `digestbot run --once --no-send` records what is listed today without sending it; "
          f"then `digestbot run`")
    return 0


def print_source_status(options: SourceOptions, st: SourceState | None, distinct: int, at: datetime) -> None:
    """One source: last success, last error (when newer than the success), papers seen, next poll."""
    from .polling import next_poll

    def when(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M} UTC" if value else "never"

    upcoming = next_poll(options, st.last_poll if st else None, at)
    print(f"  {options.name} ({options.kind}, {options.cron or 'every ' + str(options.every)})")
    if st is None:
        print(f"    never polled; next poll {when(upcoming)}")
        return
    print(f"    last success {when(st.last_success)}; papers seen {distinct} "
          f"({st.papers_seen} listings in all, {st.last_new} new last time); next poll {when(upcoming)}")
    if st.last_error:
        stale = st.last_success and st.last_error_at and st.last_error_at < st.last_success
        print(f"    last error {when(st.last_error_at)}{' (recovered since)' if stale else ''}: {st.last_error}")


def cmd_papers(args: argparse.Namespace) -> int:
    config = load_config(args)
    papers = open_store(config).papers(days=args.days)
    if args.json:
        print(json.dumps([{"id": p.key, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
                           "url": p.link, "published": p.published.isoformat() if p.published else None,
                           "upvotes": p.upvotes, "sources": list(p.sources)} for p in papers], indent=2))
        return 0
    for p in papers:
        print(f"{p.key:<24} {p.upvotes:>4}  {p.title}")
    print(f"{len(papers)} papers", file=sys.stderr)
    return 0


def cmd_sources_check(args: argparse.Namespace) -> int:
    from . import sources
    from .models import SourceMemory

    config = load_config(args)
    source = sources.build(config.source(args.name), Http())
    papers = source.collect(now(), SourceMemory())
    for p in papers:
        note = "  (new version: updates a stored paper only)" if p.update_only else ""
        print(f"{p.key:<24} {p.upvotes:>4}  {p.title}{note}")
    print(f"{args.name}: {len(papers)} papers (nothing stored)", file=sys.stderr)
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    """Render a digest to files; sends nothing and changes no ledger row."""
    from .preview import preview

    config = load_config(args)
    paths = preview(config, open_store(config), args.name, now(), days=args.days, out=Path(args.out))
    for path in paths:
        print(path)
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
    sub.add_parser("status", help="sources, papers and deliveries at a glance").set_defaults(func=cmd_status)

    init = sub.add_parser("init", help="start a new, empty database on purpose (a first `run` creates one by itself)")
    init.add_argument("--force", action="store_true", help="move a damaged database file aside and start empty")
    init.set_defaults(func=cmd_init)

    retry = sub.add_parser("retry", help="make pending digests due now")
    retry.add_argument("--failed", action="store_true", help="also give failed digests a new chance")
    retry.set_defaults(func=cmd_retry)

    papers = sub.add_parser("papers", help="list stored papers, newest first")
    papers.add_argument("--days", type=float, help="only papers first seen in the last N days")
    papers.add_argument("--json", action="store_true", help="one JSON array")
    papers.set_defaults(func=cmd_papers)

    src = sub.add_parser("sources", help="work with sources").add_subparsers(dest="sources_command", required=True)
    check = src.add_parser("check", help="fetch and parse one source, print what it found, store nothing")
    check.add_argument("name")
    check.set_defaults(func=cmd_sources_check)

    preview = sub.add_parser("preview", help="render a subscription's next digest to files (sends nothing)")
    preview.add_argument("name", help="the subscription's name or id")
    preview.add_argument("--days", type=float,
                         help="instead: what the stored papers first seen in the last N days would give")
    preview.add_argument("--out", default="digestbot-preview",
                         help="folder for digest.html, digest.txt and slack.json (default: digestbot-preview)")
    preview.set_defaults(func=cmd_preview)

    cli_subs.register(sub)

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
        for noisy in ("httpx", "httpcore", "apscheduler.executors", "slack_sdk"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
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
