"""`digestbot subs ...` and `digestbot topics ...`: read and edit subscriptions in the config file.

Part of the command line (cli/__init__.py registers these); every edit goes through config.edit.editing, which
holds the config's lock (edits at the same moment wait for each other), validates before it writes and
never leaves a half-written or invalid file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import tomlkit

from .. import config as config_module
from ..config.edit import ConfigEditor, editing, parse_assignment
from ..config.tomlpos import table_text
from ..errors import ConfigError
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
        editor.add_subscription(args.name, {k: v for k, v in values.items() if v not in (None, [])})
        return _save(editor, f"added subscription {args.name!r}")


def cmd_set(args: argparse.Namespace) -> int:
    values = dict(parse_assignment(a) for a in args.assignments)
    if "name" in values:
        raise ConfigError("renaming changes the subscription's id (and its history): remove it and add it anew")
    with editing(args.config) as editor:
        editor.set_subscription(args.name, values)
        return _save(editor, f"changed {', '.join(values)} of {args.name!r}")


def cmd_remove(args: argparse.Namespace) -> int:
    with editing(args.config) as editor:
        editor.remove_subscription(args.name)
        return _save(editor, f"removed subscription {args.name!r}")


def cmd_test(args: argparse.Namespace) -> int:
    from ..app import App
    from ..render import why

    app = App.from_config(args.config)
    sub = app.config.subscription(args.name)
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

