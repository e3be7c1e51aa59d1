"""`digestbot subs ...` and `digestbot topics ...`: read and edit subscriptions in the config file.

Part of the command line (cli/__init__.py registers these); every edit goes through config.edit.editing, which
holds the config's lock (edits at the same moment wait for each other), validates before it writes and
never leaves a half-written or invalid file.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import tomlkit
from slugify import slugify

from .. import config as config_module
from ..config.edit import ConfigEditor, editing, parse_assignment, subscription_table
from ..config.tomlpos import table_text
from ..errors import ConfigError, DigestbotError
from ..models import paper_key_of
from ..relevance import HeldBack
from .common import Actions, add_command, add_json_option, emit_json, note


def register(sub: Actions) -> None:
    subs = add_command(sub, "subs", help="list, show, add, change, remove and test subscriptions (alone: list)",
                       examples=["digestbot subs", "digestbot subs show alice",
                                 "digestbot subs add alice --query 'speculative decoding' --email alice@example.org",
                                 "digestbot subs test alice --days 3"])
    actions = subs.add_subparsers(dest="subs_command", metavar="ACTION", title="actions")
    subs.set_defaults(func=cmd_list, json=False)
    listing = add_command(actions, "list", help="one line per subscription", examples=[
        "digestbot subs list", "digestbot subs list --json | jq -r '.[].id'"])
    add_json_option(listing, "the subscriptions, an array")
    listing.set_defaults(func=cmd_list)
    show = add_command(actions, "show", help="one subscription as written, its defaults and its topics",
                       examples=["digestbot subs show alice"])
    show.add_argument("name", help=NAME_HELP)
    show.set_defaults(func=cmd_show)

    add = add_command(actions, "add", help="add a subscription to the config file", examples=[
        "digestbot subs add alice --query 'inference AND llm' --email alice@example.org --schedule 'daily 08:00'",
        "digestbot subs add lab --topic efficient-inference --slack '#papers' --schedule instant"])
    add.add_argument("name", help="the new subscription's name (its id is made from it)")
    add.add_argument("--query", help='e.g. \'inference AND (llm OR "language model") NOT survey\'')
    add.add_argument("--email", action="append", default=[], help="an address (repeat for more)")
    add.add_argument("--slack", action="append", default=[], help="a channel, e.g. #papers (repeat for more)")
    add.add_argument("--topic", action="append", default=[], help="a [topics.NAME] to include (repeatable)")
    add.add_argument("--schedule", help="instant | hourly | daily HH:MM | weekly mon HH:MM | cron")
    add.add_argument("--timezone", help="IANA name, e.g. Europe/Berlin")
    add.add_argument("--max-papers", type=int, help="at most this many papers in one digest (default 15)")
    add.set_defaults(func=cmd_add)

    change = add_command(actions, "set", help="change settings: subs set NAME query='...' email=a@x,b@y", examples=[
        "digestbot subs set alice query='speculative decoding' schedule='daily 07:00'",
        "digestbot subs set alice email=a@example.org,b@example.org timezone=   # empty: back to the default"])
    change.add_argument("name", help=NAME_HELP)
    change.add_argument("assignments", nargs="+", metavar="KEY=VALUE",
                        help="lists are comma-separated; an empty value removes the key")
    change.set_defaults(func=cmd_set)

    remove = add_command(actions, "remove", help="remove a subscription from the config file",
                         examples=["digestbot subs remove alice"])
    remove.add_argument("name", help=NAME_HELP)
    remove.set_defaults(func=cmd_remove)

    bulk = add_command(actions, "import", help="add or update subscriptions from a CSV file, in one write", examples=[
        "digestbot subs import people.csv    # columns: name,email,slack,query,topics,schedule",
        "digestbot subs export > people.csv && digestbot subs import people.csv"])
    bulk.add_argument("file", help="a CSV file with a header row: name (required), email, slack, query, topics, "
                                   "schedule; several values in one cell are separated by ';'")
    bulk.set_defaults(func=cmd_import)
    export = add_command(actions, "export", help="write the subscriptions as CSV (the columns `subs import` reads)",
                         examples=["digestbot subs export", "digestbot subs export people.csv"])
    export.add_argument("file", nargs="?", help="where (default: stdout)")
    export.set_defaults(func=cmd_export)
    remove_address = add_command(actions, "remove-address", help="remove an address or channel from every "
                                 "subscription", examples=["digestbot subs remove-address alice@example.org",
                                                           "digestbot subs remove-address bob@example.org "
                                                           "--remove-empty"])
    remove_address.add_argument("address", help="an email address or a Slack channel")
    remove_address.add_argument("--remove-empty", action="store_true",
                                help="also remove the subscriptions left with no recipient (refused without it)")
    remove_address.set_defaults(func=cmd_remove_address)
    rename = add_command(actions, "rename", help="rename a subscription, keeping its history", examples=[
        "digestbot subs rename alice 'Alice (LLM papers)'"])
    rename.add_argument("name", help=NAME_HELP)
    rename.add_argument("new_name", help="the new name (its id is made from it)")
    rename.set_defaults(func=cmd_rename)

    test = add_command(actions, "test", help="which stored papers would match, and why", examples=[
        "digestbot subs test alice", "digestbot subs test alice --days 30 --json | jq '.matches[].title'",
        "digestbot subs test alice --held-back"])
    test.add_argument("name", help=NAME_HELP)
    test.add_argument("--days", type=float, default=7, help="papers first seen in the last N days (default 7)")
    test.add_argument("--held-back", action="store_true",
                      help="instead: the query's matches its readers' votes hold back, and why")
    add_json_option(test, "the matches, best first, and why each matched")
    test.set_defaults(func=cmd_test)

    topics = add_command(sub, "topics", help="list, add and remove named topics (alone: list)",
                         examples=["digestbot topics", "digestbot topics add vision --query 'vision OR image'"])
    topic_actions = topics.add_subparsers(dest="topics_command", metavar="ACTION", title="actions")
    topics.set_defaults(func=cmd_topics_list)
    add_command(topic_actions, "list", help="every topic and who uses it",
                examples=["digestbot topics list"]).set_defaults(func=cmd_topics_list)
    topic_add = add_command(topic_actions, "add", help="add a [topics.NAME] table", examples=[
        "digestbot topics add efficient-inference --query 'quantization OR distillation'",
        "digestbot topics add like-these --like 2407.13168 --like https://huggingface.co/papers/2410.01234"])
    topic_add.add_argument("name", help="a slug, e.g. efficient-inference")
    topic_add.add_argument("--query", help="the topic's query (the same syntax as a subscription's)")
    topic_add.add_argument("--like", action="append", default=[],
                           help="an example paper: its arXiv id, or its arXiv or Hugging Face link (repeatable)")
    topic_add.add_argument("--min-similarity", type=float,
                           help="with --like: how similar a paper must be to the examples (0 to 1; default 0.12)")
    topic_add.set_defaults(func=cmd_topics_add)
    topic_remove = add_command(topic_actions, "remove", help="remove a topic (no subscription may use it)",
                               examples=["digestbot topics remove vision"])
    topic_remove.add_argument("name", help="the topic's name")
    topic_remove.set_defaults(func=cmd_topics_remove)


NAME_HELP = "the subscription's name or id"


def _recipients(sub: config_module.SubscriptionConfig) -> str:
    return ", ".join([*sub.email, *sub.slack])


def cmd_list(args: argparse.Namespace) -> int:
    config = config_module.load(args.config)
    if args.json:
        emit_json([{"id": sub.id, "name": sub.name, "schedule": sub.schedule,
                    "timezone": sub.timezone or config.bot.timezone, "query": sub.query, "topics": sub.topics,
                    "email": sub.email, "slack": sub.slack,
                    "slack_webhook": bool(sub.slack_webhook or sub.slack_webhook_env),  # its URL is a secret
                    "max_papers": sub.max_papers} for sub in config.subscriptions])
        return 0
    for sub in config.subscriptions:
        topics = f" topics={','.join(sub.topics)}" if sub.topics else ""
        print(f"{sub.id:<28} {sub.schedule:<14} {_recipients(sub):<40} {sub.query or '(every paper)'}{topics}")
    note(args, f"{len(config.subscriptions)} subscriptions")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """The subscription's table as written in the config file, then, as comments, the settings it
    leaves to their defaults, then the topics it includes: what to edit, and what is in effect."""
    config = config_module.load(args.config)
    sub = config.subscription(args.name)
    text = Path(args.config).read_text(encoding="utf-8")
    found = table_text(text, ("subscriptions", config.subscriptions.index(sub)))
    if found is None:  # not where the file's text says it is (a dotted or inline table): its values
        line, written = 0, tomlkit.dumps({"subscriptions": [sub.model_dump(exclude_defaults=True)]})
    else:
        line, written = found
    print(f"# subscription {sub.id!r}" + (f", {args.config}:{line}" if line else ""))
    print(written.rstrip())
    given = set(tomlkit.parse(written)["subscriptions"][0])
    defaults = {k: v for k, v in sub.model_dump().items() if k not in given and v not in (None, "", [])}
    if "timezone" not in given:
        defaults["timezone"] = config.bot.timezone
    if defaults:
        print("# not set above, so in effect:")
        for key, value in defaults.items():
            origin = "  # bot.timezone" if key == "timezone" else ""
            print(f"# {tomlkit.dumps({key: value}).strip()}{origin}")
    for topic in sub.topics:
        table = table_text(text, ("topics", topic))
        print()
        print(table[1] if table else tomlkit.dumps({"topics": {topic: config.topics[topic].model_dump(
            exclude_defaults=True)}}).strip())
    return 0


def _save(editor: ConfigEditor, what: str) -> int:
    editor.save()
    print(f"{editor.path}: {what}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    values = {"query": args.query, "topics": args.topic, "email": args.email, "slack": args.slack,
              "schedule": args.schedule, "timezone": args.timezone, "max_papers": args.max_papers}
    with editing(args.config) as editor:
        editor.cited = {"name": "NAME", "query": "--query", "topics": "--topic", "email": "--email", "slack": "--slack",
                        "schedule": "--schedule", "timezone": "--timezone", "max_papers": "--max-papers"}
        editor.add_subscription(args.name, {k: v for k, v in values.items() if v not in (None, [])})
        config = editor.save()
    print(f"{editor.path}: added subscription {args.name!r}")
    sub = config.subscription(args.name)
    defaults = [f"{key} {value!r}" for key, value in (("schedule", sub.schedule), ("max_papers", sub.max_papers))
                if values[key] is None]
    if args.timezone is None:
        defaults.append(f"timezone {sub.timezone or config.bot.timezone!r} (bot.timezone)")
    if defaults:  # on stderr, as notes: stdout stays the one line scripts read
        note(args, f"defaults applied: {', '.join(defaults)} (change them with `digestbot subs set`)")
    report_query(args, args.name)  # query warnings; how many recent papers it matches
    return 0


CSV_COLUMNS = ("name", "email", "slack", "query", "topics", "schedule")
CSV_LISTS = {"email", "slack", "topics"}  # several values in one cell, separated by ';'


def cmd_import(args: argparse.Namespace) -> int:
    """Add or update subscriptions from a CSV file in one validated, locked write (one daemon reload).
    A column present in the header is set from each row (an empty cell removes the key: its default);
    a column absent from the header leaves the subscriptions' values as they are."""
    rows = _read_csv(Path(args.file))
    added, updated = [], []
    with editing(args.config) as editor:
        for _line, row in rows:
            values: dict[str, Any] = {}
            for key, cell in row.items():
                if key == "name":
                    continue
                items = [v.strip() for v in cell.split(";") if v.strip()] if key in CSV_LISTS else cell.strip()
                values[key] = items
            try:
                editor.find(row["name"])
            except ConfigError:
                editor.add_subscription(row["name"], {k: v for k, v in values.items() if v not in ("", [])})
                added.append(row["name"])
                continue
            table = subscription_table(editor, row["name"])
            editor.set_subscription(row["name"], {k: v if v != [] else "" for k, v in values.items()
                                                  if v not in ("", []) or k in table})
            updated.append(row["name"])
        try:
            editor.save()
        except ConfigError as exc:
            raise ConfigError([f"{args.file}: nothing imported:", *exc.problems]) from None
    print(f"{editor.path}: added {len(added)} and updated {len(updated)} subscriptions from {args.file} (one write)")
    return 0


def _read_csv(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's export may start with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if "name" not in header or unknown:
        raise ConfigError(f"{path}:1: the header must name the column `name` and may name "
                          f"{', '.join(CSV_COLUMNS[1:])}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    rows, seen = [], set()
    for row in reader:
        line = reader.line_num
        cells = {key.strip(): (value or "") for key, value in row.items() if key is not None}
        name = cells.get("name", "").strip()
        if not name:
            raise ConfigError(f"{path}:{line}: a row without a name")
        if slugify(name) in seen:
            raise ConfigError(f"{path}:{line}: {name!r} is in the file twice")
        seen.add(slugify(name))
        rows.append((line, {**cells, "name": name}))
    return rows


def cmd_export(args: argparse.Namespace) -> int:
    config = config_module.load(args.config)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for sub in config.subscriptions:
        writer.writerow([sub.name, ";".join(sub.email), ";".join(sub.slack), sub.query, ";".join(sub.topics),
                         sub.schedule])
    if args.file:
        Path(args.file).write_text(out.getvalue(), encoding="utf-8")
        note(args, f"wrote {len(config.subscriptions)} subscriptions to {args.file}")
    else:
        sys.stdout.write(out.getvalue())
    return 0


def cmd_remove_address(args: argparse.Namespace) -> int:
    """Remove ADDRESS from every subscription's email and slack lists, in one write. A subscription that
    would be left with no recipient is refused (nothing is changed), or removed with --remove-empty."""
    wanted = str(args.address).strip()

    def same(entry: str) -> bool:
        return entry.strip() == wanted or str(parseaddr(entry)[1]).lower() == wanted.lower()

    with editing(args.config) as editor:
        changed, emptied = [], []
        for table in list(editor.doc.get("subscriptions", [])):
            name = str(table.get("name", ""))
            values = {key: [str(v) for v in table.get(key, [])] for key in ("email", "slack")}
            kept = {key: [v for v in entries if not same(v)] for key, entries in values.items()}
            if kept == values:
                continue
            changed.append(name)
            if not kept["email"] and not kept["slack"] and not table.get("slack_webhook") \
                    and not table.get("slack_webhook_env"):
                emptied.append(name)
            else:
                editor.set_subscription(name, {k: v or "" for k, v in kept.items() if v != values[k]})
        if not changed:
            print(f"{wanted} is in no subscription; nothing changed")
            return 0
        if emptied and not args.remove_empty:
            raise ConfigError(f"{editor.path}: nothing changed: {', '.join(map(repr, emptied))} would be left with "
                              f"no recipient; add --remove-empty to remove those subscriptions too")
        for name in emptied:
            editor.remove_subscription(name)
        editor.save()
    removed = f"; removed {', '.join(map(repr, emptied))} (no recipient left)" if emptied else ""
    print(f"{editor.path}: removed {wanted} from {len(changed)} subscriptions{removed}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    """Rename a subscription and move its history (matches, digests, votes, readers who left) to the new
    id. The database's rows move in one transaction, and the config file is saved inside it, just before
    the commit: a failure saving the file rolls the move back; another process cannot write meanwhile."""
    from ..app import App
    from ..errors import DigestbotError, StoreError
    from ..store import Store

    new_id = slugify(args.new_name)
    if not new_id:
        raise ConfigError(f"the name {args.new_name!r} makes an empty id: use a name with letters or digits")
    with editing(args.config) as editor:
        config = config_module.loads(editor.text(), editor.path)
        try:
            old = config.subscription(args.name)
        except ConfigError:
            return _finish_rename(args, config, new_id)
        if any(s.id == new_id and s is not old for s in config.subscriptions):
            raise ConfigError(f"{editor.path}: another subscription already has the id {new_id!r}")
        editor.set_subscription(args.name, {"name": args.new_name})
        config_module.loads(editor.text(), editor.path)  # valid before anything moves
        store: Store | None = None
        try:
            if new_id != old.id:
                store = App.from_config(config, open_database=False, create=False).store
        except StoreError:
            raise  # a database that is there but busy or damaged: its history must not be left behind
        except DigestbotError:
            store = None  # no database yet (open_store's "no database at"): no history to move
        if store is None:
            editor.save()
            moved: dict[str, int] = {}
        else:
            with store, store.renaming_subscription(old.id, new_id) as moved:
                editor.save()
    print(f"{editor.path}: renamed {old.name!r} to {args.new_name!r} (id {old.id!r} -> {new_id!r}); history moved: "
          + (", ".join(f"{n} {table}" for table, n in moved.items() if n) or "none"))
    return 0


def _finish_rename(args: argparse.Namespace, config: config_module.Config, new_id: str) -> int:
    """`subs rename OLD NEW` again after one that stopped between saving the file and moving the rows."""
    from ..app import App

    new = config.subscription(args.new_name)  # ConfigError: neither name is configured
    old_id = slugify(args.name)
    with App.from_config(config, create=False) as app, app.store.renaming_subscription(old_id, new.id) as moved:
        pass
    if not any(moved.values()):
        raise ConfigError(f"{config.path}: no subscription {args.name!r}, and no history under its id to move")
    print(f"{new.name!r} is already in the config; moved the history left under {old_id!r}: "
          + ", ".join(f"{n} {table}" for table, n in moved.items() if n))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    values = dict(parse_assignment(a) for a in args.assignments)
    if "name" in values:
        raise ConfigError("renaming changes the subscription's id: `digestbot subs rename OLD NEW` moves its history "
                          "with it")
    with editing(args.config) as editor:
        # As typed ("email=a@x,b@y"), unless that would print a character a terminal acts on (sendable.py).
        editor.cited = {parse_assignment(a)[0]: a if a.isprintable() else parse_assignment(a)[0] + "="
                        for a in args.assignments}
        editor.set_subscription(args.name, values)
        code = _save(editor, f"changed {', '.join(values)} of {args.name!r}")
    if "query" in values or "topics" in values:
        report_query(args, args.name)
    return code


RECENT_DAYS = 7


def report_query(args: argparse.Namespace, name: str) -> None:
    """After `subs add` / `subs set`: warnings about a query that parses but cannot mean what was typed
    (`llm or vlm`), and how many stored papers of the last RECENT_DAYS days it matches, so that a query
    matching nothing is seen at once, not after a week of empty digests. Says nothing of the database
    when there is none yet (this never creates one) or it cannot be read."""
    config = config_module.load(args.config)
    sub = config.subscription(name)
    for warning in config_module.check_queries(config, sub.id):
        print(f"warning: {warning}", file=sys.stderr)
    recent = recent_matches(config, sub.id)
    if recent is not None:
        matched, papers = recent
        note(args, f"{sub.name!r} matches {matched} of the {papers} papers stored from the last {RECENT_DAYS} days"
             + (" (`digestbot subs test` shows which)" if matched else ""))


def recent_matches(config: config_module.Config, subscription_id: str) -> tuple[int, int] | None:
    from ..app import App
    from ..store import Store, sqlite_path

    try:
        url = config.database_url
        path = sqlite_path(url)
        if path is not None and not Path(path).is_file():
            return None
        with Store.open_existing(url, busy_timeout=config.bot.busy_timeout, upgrade=False) as store:
            matches, papers = App(config, store=store).test_subscription(subscription_id, RECENT_DAYS)
    except DigestbotError:
        return None
    return len(matches), papers


def cmd_remove(args: argparse.Namespace) -> int:
    with editing(args.config) as editor:
        editor.remove_subscription(args.name)
        return _save(editor, f"removed subscription {args.name!r}")


def cmd_test(args: argparse.Namespace) -> int:
    from ..app import App
    from ..render import why

    config = config_module.load(args.config)
    sub = config.subscription(args.name)  # an unknown name is a usage error, whether or not a database exists
    app = App.from_config(config, create=False)
    if args.held_back:
        return _held_back(args, *app.held_back(sub.id, args.days), sub.id, sub.name)
    matches, papers = app.test_subscription(sub.id, args.days)
    if args.json:
        emit_json({"subscription": sub.id, "name": sub.name, "days": float(args.days), "papers": papers,
                   "matches": [{"id": m.paper.key, "title": m.paper.title, "url": m.paper.link, "score": m.score,
                                "why": why(m)} for m in matches]})
        return 0
    for match in matches:
        print(f"{match.score:6.2f}  {match.paper.title}\n        {why(match)}")
    note(args, f"{len(matches)} of {papers} papers from the last {args.days:g} days match {sub.name!r}")
    return 0


def _held_back(args: argparse.Namespace, held: list[HeldBack], papers: int, sub_id: str, name: str) -> int:
    if args.json:
        emit_json({"subscription": sub_id, "name": name, "days": float(args.days), "papers": papers,
                   "held_back": [{"id": h.match.paper.key, "title": h.match.paper.title, "url": h.match.paper.link,
                                  "why": h.reason} for h in held]})
        return 0
    for h in held:
        print(f"{h.match.paper.title}\n        held back: {h.reason}")
    note(args, f"{len(held)} of {papers} papers from the last {args.days:g} days held back from {name!r} by its votes")
    return 0


def cmd_topics_list(args: argparse.Namespace) -> int:
    config = config_module.load(args.config)
    for name, topic in config.topics.items():
        users = [s.id for s in config.subscriptions if name in s.topics]
        what = topic.query or f"like {', '.join(topic.like)}"
        print(f"{name:<28} {what}   used by: {', '.join(users) or 'nobody'}")
    return 0


def cmd_topics_add(args: argparse.Namespace) -> int:
    like = [paper_key_of(text) for text in args.like]  # the file says what the matcher compares
    values = {"query": args.query, "like": like, "min_similarity": args.min_similarity}
    with editing(args.config) as editor:
        editor.add_topic(args.name, {k: v for k, v in values.items() if v not in (None, [])})
        return _save(editor, f"added topic {args.name!r}")


def cmd_topics_remove(args: argparse.Namespace) -> int:
    with editing(args.config) as editor:
        editor.remove_topic(args.name)
        return _save(editor, f"removed topic {args.name!r}")

