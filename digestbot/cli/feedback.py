"""`digestbot feedback ...`: readers' votes on papers ("more like this" = up, "not for me" = down), the
same votes the digests' links record through `digestbot serve` (web/feedback.py).

Two spellings record a vote, one lists them:

    digestbot feedback SUBSCRIPTION PAPER up|down [--target ADDRESS]
    digestbot feedback record SUBSCRIPTION PAPER up|down [--target ADDRESS]
    digestbot feedback list SUBSCRIPTION [--json]

The number of words decides, so a paper (or subscription) called "list" or "record" is no problem: three
words are always SUBSCRIPTION PAPER VOTE, two are `list SUBSCRIPTION`, four are `record ...`.
Part of the command line (cli/__init__.py registers it).
"""
from __future__ import annotations

import argparse
from datetime import UTC, datetime

from ..app import App
from ..models import paper_key_of
from ..store import ANY_TARGET, VOTES
from .common import Actions, UsageError, add_command, add_json_option, emit_json, iso, note

USAGE = ("digestbot feedback SUBSCRIPTION PAPER up|down [--target ADDRESS]\n"
         "       digestbot feedback record SUBSCRIPTION PAPER up|down [--target ADDRESS]\n"
         "       digestbot feedback list SUBSCRIPTION [--json]")


def register(sub: Actions) -> None:
    feedback = add_command(sub, "feedback", help="record or list readers' votes on papers (more like this: up, "
                           "not for me: down)", examples=[
                               "digestbot feedback alice 2411.01234 down --target alice@example.org",
                               "digestbot feedback record alice 2411.01234 up   # the same, spelled out",
                               "digestbot feedback list alice",
                               "digestbot feedback list alice --json | jq '.[] | select(.vote == \"down\")'"],
                           description="Record a reader's vote on a paper (up: more like this, down: not for me; a "
                                       "later vote replaces it), or list a subscription's votes. Three words are "
                                       "always SUBSCRIPTION PAPER VOTE, so a paper called 'list' is no problem.")
    feedback.usage = USAGE
    feedback.add_argument("words", nargs="+", metavar="WORDS",
                          help="SUBSCRIPTION PAPER up|down, or record SUBSCRIPTION PAPER up|down, or list SUBSCRIPTION;"
                               " PAPER is an arXiv id or link, or a paper key")
    feedback.add_argument("--target", default=None, metavar="ADDRESS",
                          help=f"whose vote: an address or Slack channel (default: {ANY_TARGET!r}, the subscription "
                               "as a whole)")
    add_json_option(feedback, "with list: the votes, an array")
    feedback.set_defaults(func=cmd_feedback)


def cmd_feedback(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if len(words) == 2 and words[0] == "list":
        if args.target is not None:
            raise UsageError("--target is for recording a vote; `feedback list` lists every target's")
        return cmd_list(args, words[1])
    if len(words) == 4 and words[0] == "record":
        words = words[1:]
    if len(words) != 3:
        raise UsageError(f"feedback takes SUBSCRIPTION PAPER up|down, or list SUBSCRIPTION; usage:\n  {USAGE}")
    if args.json:
        raise UsageError("--json is for `feedback list`")
    name, paper, vote = words
    if vote not in VOTES:
        raise UsageError(f"a vote is up (more like this) or down (not for me), not {vote!r}")
    app = App.from_config(args.config, open_database=False, create=False)  # no matcher needed
    sub = app.config.subscription(name)
    key, target = paper_key_of(paper), args.target or ANY_TARGET
    replaced = [v for v in app.store.votes(sub.id) if v.target == target and v.paper == key]
    app.store.record_vote(sub.id, target, key, vote, datetime.now(UTC))
    before = f" (it was {replaced[0].vote})" if replaced else ""
    print(f"{sub.id}: {vote} on {key} for {target}{before}")
    return 0


def cmd_list(args: argparse.Namespace, name: str) -> int:
    app = App.from_config(args.config, create=False)
    sub = app.config.subscription(name)
    votes = app.store.votes(sub.id)
    if args.json:
        emit_json([{"subscription": v.subscription_id, "target": v.target, "paper": v.paper, "vote": v.vote,
                    "at": iso(v.at)} for v in votes])
        return 0
    for v in votes:
        print(f"{v.at:%Y-%m-%d %H:%M}  {v.vote:<4}  {v.paper}  {v.target}")
    note(args, f"{len(votes)} votes on {sub.id}")
    return 0
