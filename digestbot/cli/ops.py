"""`digestbot status | init | retry | papers | sources check | db current | db upgrade`: looking after a
running installation.

Part of the command line (cli/__init__.py registers these).
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime

from .. import pipeline
from .. import store as store_module
from ..app import App, now
from ..errors import DeliveryError
from ..sources import SourceOptions
from ..store import (
    DeliveryStatus,
    DigestRecord,
    DigestStatus,
    Revision,
    SourceRecord,
    Store,
    dbstate,
    migrations,
)
from ..store.ledger import Ledger
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    Actions,
    UsageError,
    add_command,
    add_json_option,
    emit_json,
    iso,
    note,
    print_help_of,
)


def register(sub: Actions) -> None:
    status = add_command(sub, "status", help="sources, papers and deliveries at a glance; exit 1 when a source's "
                         "latest poll failed, a digest failed or a daemon stopped beating", examples=[
        "digestbot status", "digestbot status --json | jq '.sources[] | select(.last_error)'",
        "digestbot status -q >/dev/null || echo unhealthy   # for cron and monitors"])
    add_json_option(status, "sources, papers and digests")
    status.set_defaults(func=cmd_status)

    send_test = add_command(sub, "send-test", help="send one small message through the configured channel and "
                            "print what the server answered (exit 1 when it fails)", examples=[
        "digestbot send-test alice@example.org    # through [email]: prints the SMTP server's reply",
        "digestbot send-test '#papers'            # through [slack]: prints the message's ts and channel"])
    send_test.add_argument("target", help="an email address, or a Slack channel: '#name' (quoted for the shell)")
    add_json_option(send_test, "the target, channel, transport, id and the server's answer")
    send_test.set_defaults(func=cmd_send_test)

    init = add_command(sub, "init", help="start a new, empty database on purpose (a first `run` creates one by "
                       "itself)", examples=["digestbot init", "digestbot init --force   # a damaged database"])
    init.add_argument("--force", action="store_true", help="move a damaged database file aside and start empty")
    init.set_defaults(func=cmd_init)

    retry = add_command(sub, "retry", help="make pending digests due now", examples=[
        "digestbot retry && digestbot run --once", "digestbot retry --failed"])
    retry.add_argument("--failed", action="store_true",
                       help="also give failed digests a new chance (those for a target no longer in the config: "
                            "their papers go to the subscription's current targets)")
    retry.set_defaults(func=cmd_retry)

    discard = add_command(sub, "discard", help="cancel pending and failed digests you do not want sent", examples=[
        "digestbot discard --subscription alice              # everything queued or failed for alice",
        "digestbot discard --target old@example.org --yes    # without asking (scripts)",
        "digestbot discard --id 41 --id 42"])
    discard.add_argument("--subscription", metavar="NAME", help="the subscription's name or id")
    discard.add_argument("--target", metavar="ADDRESS", help="an address or Slack channel")
    discard.add_argument("--id", type=int, action="append", default=[], metavar="N",
                         help="a digest id (as `digestbot status` shows it; repeatable)")
    discard.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    discard.set_defaults(func=cmd_discard)

    papers = add_command(sub, "papers", help="list stored papers, newest first", examples=[
        "digestbot papers --days 1", "digestbot papers --json | jq '.[0].title'"])
    papers.add_argument("--days", type=float, help="only papers first seen in the last N days")
    add_json_option(papers, "the papers, an array")
    papers.set_defaults(func=cmd_papers)

    src_parser = add_command(sub, "sources", help="work with sources", examples=["digestbot sources check arxiv-cl"])
    src = src_parser.add_subparsers(dest="sources_command", metavar="ACTION", title="actions")
    src_parser.set_defaults(func=print_help_of(src_parser))
    check = add_command(src, "check", help="fetch and parse one source, print what it found, store nothing",
                        examples=["digestbot sources check arxiv-cl"])
    check.add_argument("name", help="the source's name ([[sources]] name in the config)")
    check.set_defaults(func=cmd_sources_check)

    db_parser = add_command(sub, "db", help="the database's schema revision", examples=[
        "digestbot db current", "digestbot db upgrade"])
    db = db_parser.add_subparsers(dest="db_command", metavar="ACTION", title="actions")
    db_parser.set_defaults(func=print_help_of(db_parser))
    add_command(db, "current", help="show the schema revision and whether it is the newest (changes nothing)",
                examples=["digestbot db current"]).set_defaults(func=cmd_db_current)
    add_command(db, "upgrade", help="upgrade the schema to this version's (any command does it on open; a SQLite "
                "file is copied first)", examples=["digestbot db upgrade"]).set_defaults(func=cmd_db_upgrade)


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 1 (EXIT_FAILED) when `health_problems` finds any: a monitor or a cron job can run
    `digestbot status -q` and act on the exit code alone."""
    app = App.from_config(args.config, create=False)
    if args.json:
        document = status_document(app)
        emit_json(document)
        return EXIT_FAILED if document["problems"] else EXIT_OK
    config, store = app.config, app.store
    states = store.source_states()
    print(f"database: {store_module.sqlite_path(store.url) or dbstate.shown(store.url)}  "
          f"papers: {store.count_papers()}")
    print_daemons(store.heartbeats(), now(), store.leadership().holder())
    print("\nsources:")
    for options in config.sources:
        print_source_status(options, states.get(options.name), store.papers_from(options.name), now())
    print_deliveries(store)
    problems = health_problems(app)
    if problems:
        print("\nunhealthy (exit 1):")
        for problem in problems:
            print(f"  {problem}")
    return EXIT_FAILED if problems else EXIT_OK


def health_problems(app: App) -> list[str]:
    """What makes `status` exit 1: a configured source whose latest poll failed, a failed digest, a
    daemon that stopped beating without removing its row (killed, crashed). No daemon at all is not a
    problem here (`run --once` from cron is a way to run digestbot); /healthz and /metrics show its age."""
    store, at = app.store, now()
    states = store.source_states()
    problems = [f"source {o.name}: its latest poll failed: {states[o.name].last_error}"
                for o in app.config.sources if (st := states.get(o.name)) and st.failing]
    failed = Ledger(store).digests(DigestStatus.FAILED)
    if failed:
        problems.append(f"{len(failed)} digests failed (`digestbot status` lists them; fix the cause, then "
                        f"`digestbot retry --failed`)")
    beats = store.heartbeats()
    if beats and not any(_alive(b.beat_at, at) for b in beats):
        problems.append(f"daemon: no heartbeat for {_age(beats[0].beat_at, at):.0f}s (stopped without cleaning up?)")
    return problems


def status_document(app: App) -> dict[str, object]:
    """`status --json` (README, "Commands"): what `status` prints, as data."""
    from ..schedule import next_poll

    store, at = app.store, now()
    states, ledger = store.source_states(), Ledger(store)
    sources = []
    for options in app.config.sources:
        st = states.get(options.name)
        sources.append({
            "name": options.name, "kind": options.kind, "schedule": options.cron or f"every {options.every}",
            "last_poll": iso(st.last_poll if st else None), "last_success": iso(st.last_success if st else None),
            "last_error": st.last_error if st else None, "last_error_at": iso(st.last_error_at if st else None),
            "failing": bool(st and st.failing),
            "next_poll": iso(next_poll(options, st.last_poll if st else None, at)),
            "papers_seen": store.papers_from(options.name),  # distinct papers
            "listings_seen": st.papers_seen if st else 0, "last_new": st.last_new if st else 0})
    per_paper = store.delivery_counts()
    digests = {channel: {"pending": c.pending, "sending": c.sending, "sent": c.sent, "failed": c.failed,
                         "oldest_pending": iso(c.oldest_pending),
                         "papers": {str(s): per_paper.get((channel, s), 0) for s in DeliveryStatus}}
               for channel, c in sorted(ledger.counts().items())}

    def row(r: DigestRecord) -> dict[str, object]:
        return {"id": r.id, "subscription": r.subscription_id, "channel": r.channel, "target": r.target,
                "attempts": r.attempts, "error": r.last_error}

    beats = store.heartbeats()
    problems = health_problems(app)
    leader = store.leadership().holder()
    daemons = [{"host": b.host, "pid": b.pid, "started_at": iso(b.started_at), "last_heartbeat": iso(b.beat_at),
                "age_s": _age(b.beat_at, at), "alive": _alive(b.beat_at, at), "leader": _leads(b, leader)}
               for b in beats]
    return {"database": store_module.sqlite_path(store.url) or dbstate.shown(store.url),
            "healthy": not problems, "problems": problems, "papers": store.count_papers(),
            "daemon_heartbeat_age_s": _age(beats[0].beat_at, at) if beats else None, "daemons": daemons,
            "sources": sources, "digests": digests,
            "failed": [row(r) for r in ledger.digests(DigestStatus.FAILED)],
            "retrying": [{**row(r), "next_try": iso(r.next_try)} for r in ledger.digests(DigestStatus.PENDING)
                         if r.last_error]}


def _age(then: datetime, at: datetime) -> float:
    return round((at - then).total_seconds(), 1)


def _alive(beat_at: datetime, at: datetime) -> bool:
    """A daemon beats every HEARTBEAT_SECONDS; three missed beats (a busy database can delay one) and it
    is taken for gone (killed, crashed, its machine down: a clean stop removes its row)."""
    from ..daemon import HEARTBEAT_SECONDS

    return _age(beat_at, at) <= 3 * HEARTBEAT_SECONDS


def print_daemons(beats: list[store_module.Heartbeat], at: datetime,
                  leader: store_module.LeaderInfo | None = None) -> None:
    if not beats:
        print("daemon: no daemon heartbeat (`digestbot run` is not running, or never ran on this database)")
    for b in beats:
        state = "alive" if _alive(b.beat_at, at) else "silent (stopped without cleaning up?)"
        leads = ", the poll leader" if _leads(b, leader) else ""
        print(f"daemon: {state} on {b.host} (pid {b.pid}{leads}), last heartbeat {_age(b.beat_at, at):.0f}s ago")


def _leads(beat: store_module.Heartbeat, leader: store_module.LeaderInfo | None) -> bool:
    """Whether this daemon holds the poll leader lock (store/leader.py): it polls and opens digests."""
    return leader is not None and (leader.host, leader.pid) == (beat.host, beat.pid)


def print_deliveries(store: Store) -> None:
    ledger = Ledger(store)
    print("\ndigests (one per subscription, channel, recipient and period):")
    counts, papers = ledger.counts(), store.delivery_counts()
    if not counts:
        print("  none yet")
    for channel, c in sorted(counts.items()):
        oldest = f"; oldest waiting since {c.oldest_pending:%Y-%m-%d %H:%M} UTC" if c.oldest_pending else ""
        per_paper = ", ".join(f"{s} {papers.get((channel, s), 0)}" for s in DeliveryStatus)
        print(f"  {channel:<14} pending {c.pending}, sending {c.sending}, sent {c.sent}, failed {c.failed} "
              f"(papers: {per_paper}){oldest}")
    failed = ledger.digests(DigestStatus.FAILED)
    for row in failed:
        print(f"  failed #{row.id}: {row.subscription_id} -> {row.target} ({row.channel}), {row.attempts} attempts: "
              f"{row.last_error}")
    retrying = [r for r in ledger.digests(DigestStatus.PENDING) if r.last_error]
    for row in retrying:
        print(f"  retrying #{row.id}: {row.subscription_id} -> {row.target} ({row.channel}) at "
              f"{row.next_try:%Y-%m-%d %H:%M} UTC, {row.attempts} attempts so far: {row.last_error}")
    if retrying or failed:
        print("  (`digestbot retry` sends the pending ones now; `retry --failed` also the failed ones)")


def cmd_send_test(args: argparse.Namespace) -> int:
    """Nothing is recorded; the database is not opened (a channel can be tried before the first run)."""
    app = App.from_config(args.config, open_database=False)
    try:
        sent = app.send_test(args.target)
    except DeliveryError as exc:
        if args.json:
            emit_json({"target": args.target, "ok": False, "error": str(exc)})
        else:
            print(f"send-test to {args.target} FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        emit_json({"target": sent.target, "ok": True, "channel": sent.ledger_channel, "kind": sent.kind,
                   "id": sent.server_id, "reply": sent.reply})
        return EXIT_OK
    if sent.kind == "file":
        section = "[email]" if sent.ledger_channel == "email" else "[slack]"
        print(f"written, not sent: the config has no {section} section, so {sent.ledger_channel} digests go to "
              f"the outbox: {sent.server_id}")
        return EXIT_OK
    print(f"sent to {sent.target} via {sent.kind}; the server answered: {sent.reply}")
    if sent.ledger_channel == "email":
        print(f"Message-ID: {sent.server_id} (look for it in the recipient's mailbox, or in the server's log)")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    app = App.from_config(args.config, create=False)
    ledger = Ledger(app.store)
    if args.failed:  # after fixing a wrong address or channel: the failed papers go to the current targets
        current = pipeline.all_targets(app.config, app.store.suppressions())
        rerouted, made = ledger.reroute_failed(current, now())
        if rerouted:
            print(f"{rerouted} failed digests were for targets no longer in the config: their papers now wait for "
                  f"the subscriptions' current targets ({made} deliveries)")
    count = ledger.retry_now(now(), failed=args.failed)
    print(f"{count} digests are due now; `digestbot run --once` (or the running daemon within 5 minutes) sends them")
    return 0


def cmd_discard(args: argparse.Namespace) -> int:
    """Cancel pending and failed digests an admin does not want sent (kept in the ledger, marked cancelled)."""
    if args.subscription is None and args.target is None and not args.id:
        raise UsageError("say what to discard: --subscription NAME, --target ADDRESS and/or --id N")
    app = App.from_config(args.config, create=False)
    sub_id = app.config.subscription(args.subscription).id if args.subscription else None
    ids = list(args.id) or None
    what = dict(subscription_id=sub_id, target=args.target, ids=ids, now=now())
    digests, waiting = app.store.discard(**what, dry_run=True)
    if not digests and not waiting:
        print("nothing to discard: no pending or failed digest matches")
        return 0
    summary = f"{digests} digests (pending or failed) and {waiting} papers waiting for a digest"
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"would discard {summary}; add --yes to do it")
        answer = input(f"discard {summary}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing discarded")
            return 0
    digests, waiting = app.store.discard(**what)
    print(f"discarded {digests} digests and {waiting} waiting papers (kept in the ledger, marked cancelled)")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Create the database on purpose, also where a lost one was recorded (see store/dbstate.py)."""
    app = App.from_config(args.config, open_database=False)
    done = app.init_database(force=args.force)
    shown = dbstate.shown(app.config.database_url)
    if not done.created:
        print(f"{shown}: already a digestbot database; nothing changed")
        return 0
    if done.moved_aside:
        print(f"moved the old database to {done.moved_aside}")
    print(f"created {shown}\nnext: `digestbot run --once --no-send` records what is listed today "
          f"without sending it; then `digestbot run`")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    app = App.from_config(args.config, open_database=False)
    found = app.schema_revision()
    print(f"{dbstate.shown(app.config.database_url)}: {describe(found)}")
    return 0 if found.tables in migrations.REVISIONS else 1


def describe(found: Revision) -> str:
    """The revision in words, and what `db upgrade` would do."""
    names = migrations.REVISIONS
    if found.tables not in names:
        return f"revision {found.tables}, unknown to this digestbot (the newest it knows is {migrations.HEAD})"
    said = f"revision {found.tables} ({names[found.tables]})"
    if found.recorded is None:
        said = f"no revision recorded (made before migrations); its tables are {said}"
    if found.newest:
        return f"{said}: the newest; nothing to upgrade"
    todo = ", ".join(found.pending) or "nothing but recording the revision"
    return (f"{said}; the newest is {migrations.HEAD}: `digestbot db upgrade` applies {todo} (any other command "
            f"does so when it opens the database; a SQLite file is copied first)")


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    app = App.from_config(args.config, open_database=False)
    done = app.upgrade_schema()
    shown = dbstate.shown(app.config.database_url)
    if done is None:
        print(f"{shown}: already at revision {migrations.HEAD}, the newest; nothing changed")
        return 0
    if not done.before.pending:  # made before migrations, with the newest tables
        print(f"{shown}: recorded revision {migrations.HEAD}, which its tables already had (made before migrations)")
    else:
        print(f"{shown}: upgraded from revision {done.before.tables} to {migrations.HEAD}")
    if done.backup:
        print(f"a copy from before the upgrade: {done.backup}")
    return 0


def print_source_status(options: SourceOptions, st: SourceRecord | None, distinct: int, at: datetime) -> None:
    """One source: last success, last error (when newer than the success), papers seen, next poll."""
    from ..schedule import next_poll

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
    papers = App.from_config(args.config, create=False).store.papers(days=args.days)
    if args.json:
        emit_json([{"id": p.key, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
                    "url": p.link, "published": p.published.isoformat() if p.published else None,
                    "upvotes": p.upvotes, "sources": list(p.sources)} for p in papers])
        return 0
    for p in papers:
        print(f"{p.key:<24} {p.upvotes:>4}  {p.title}")
    note(args, f"{len(papers)} papers")
    return 0


def cmd_sources_check(args: argparse.Namespace) -> int:
    papers = App.from_config(args.config, open_database=False).check_source(args.name)
    for p in papers:
        version = "  (new version: updates a stored paper only)" if p.update_only else ""
        print(f"{p.key:<24} {p.upvotes:>4}  {p.title}{version}")
    note(args, f"{args.name}: {len(papers)} papers (nothing stored)")
    return 0
