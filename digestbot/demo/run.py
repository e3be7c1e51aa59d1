"""`digestbot demo`: the real job, offline, on the bundled sample listings.

The demo leaves a playground in one folder: the sample listings as files (`listings/*.txt`, saved Hugging
Face papers pages), a config whose `text` sources read them, its SQLite database and the outbox the digests
are written to. The first pass goes through the real `text` source, store, matcher, templates and the file
channel; afterwards the folder is an installation like any other: `digestbot -c DIR/config.toml status`,
`subs add`, `run --once` (which then finds nothing new, as a poll of an unchanged listing does) all work.

Running the demo again starts the playground over (database and outbox), unless its config was edited
since the demo wrote it: then it refuses, and `--reset` is needed to wipe the edits too.
"""
from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..app import App
    from ..pipeline import PollResult, SendResult


class Report(Protocol):
    """How the command line reports a run (`cli.report_run`)."""

    def __call__(self, polls: list[PollResult], sends: SendResult, *, sent_anything: bool,
                 outbox: frozenset[str] = frozenset()) -> None: ...


LISTINGS = ("listing-machine-inference.txt", "listing-privacy-inference.txt", "listing-reasoning-inference.txt")
DEMO_CONFIG = """\
# The demo's config: the same format as a real one (see config.example.toml).
[bot]
database = "sqlite:///demo.db"
outbox = "outbox"                  # no [email] / [slack] sections: digests are written here
max_age_days = 36500               # the sample listings are old; a real config keeps the default, 7

# Saved Hugging Face papers pages (the `text` source kind), copied here by the demo: edit them, or add
# a real source (config.example.toml) and `digestbot -c config.toml run --once`.
[[sources]]
name = "machine-inference"
kind = "text"
path = "listings/listing-machine-inference.txt"

[[sources]]
name = "privacy-inference"
kind = "text"
path = "listings/listing-privacy-inference.txt"

[[sources]]
name = "reasoning-inference"
kind = "text"
path = "listings/listing-reasoning-inference.txt"

[topics.privacy]
query = 'privacy OR "membership inference" OR "differential privacy"'

[[subscriptions]]
name = "Alice: LLM inference"
query = 'inference AND (llm OR llms OR "language model" OR "language models") NOT survey'
email = ["alice@example.org"]
schedule = "instant"

[[subscriptions]]
name = "Privacy lab"
topics = ["privacy"]
email = ["privacy-lab@example.org"]
slack = ["#privacy"]
schedule = "instant"

[[subscriptions]]
name = "Top papers"                # no query: every new paper, ranked by upvotes
email = ["bob@example.org"]
schedule = "instant"
max_papers = 5
"""


ALICE = "alice-llm-inference"
# Alice wants papers on running LLMs fast; her query's "inference" and "LLM" also find membership
# inference attacks, statistical inference and the like.
LIKES = ("accelerat", "on-device", "mixed-precision", "token merging", "efficient inference", "inference framework",
         "inference performance")
DISLIKES = ("membership inference", "translation", "surrogate", "in-context learning", "tool-augmented")


def vote_as_alice(app: App) -> str:
    """Alice's votes on what her first digest showed, recorded as `digestbot feedback` records them."""
    from ..digest import rank
    from ..store import ANY_TARGET, DigestStatus, Ledger

    cap = app.config.subscription(ALICE).max_papers
    shown = [m.paper for row in Ledger(app.store).digests(DigestStatus.SENT) if row.subscription_id == ALICE
             for m in rank(app.store.digest_matches(row.id))[:cap]]  # only what her digest showed
    votes = {}
    for paper in shown:
        title = paper.title.lower()
        if any(word in title for word in DISLIKES):
            votes[paper.key] = "down"
        elif any(word in title for word in LIKES):
            votes[paper.key] = "up"
    for key, vote in votes.items():
        app.store.record_vote(ALICE, ANY_TARGET, key, vote, datetime.now(UTC))
    ups = sum(v == "up" for v in votes.values())
    return (f"Alice marks {ups} papers of her digest \"more like this\" (running LLMs fast) and "
            f"{len(votes) - ups} \"not for me\" (membership inference and other senses of \"inference\"), as "
            f"`digestbot feedback` or her digest's links would: her next digest learns from them")


SHOWN = 4  # held-back papers the demo prints


def learned_choices(app: App) -> str:
    """What Alice's votes changed in the last poll: the query's matches held back, and why."""
    from ..relevance import LearningMatcher

    matcher = app.matcher
    held = [h for h in (matcher.held_back if isinstance(matcher, LearningMatcher) else [])
            if h.match.subscription_id == ALICE]
    lines = [f"  held back: '{h.match.paper.title[:60]}' ({h.reason})" for h in held[:SHOWN]]
    lines += [f"  ... and {len(held) - SHOWN} more"] if len(held) > SHOWN else []
    name = app.config.subscription(ALICE).name
    return "\n".join([f"Alice's votes ranked her new digest, added papers her query missed (their why line: "
                      f"\"like '…' that you marked more like this\") and held back {len(held)} of its matches "
                      f"(`digestbot subs test '{name}' --held-back` lists them):", *lines])


def semantic_too(app: App) -> str | None:
    """With the `semantic` extra installed: the sentence-embedding representation on the same papers and
    votes (each paper embedded once and kept in the database, as `representation = "semantic"` does),
    beside the default TF-IDF one. None without the extra."""
    import dataclasses
    import time

    from ..app import App, semantic_space
    from ..relevance import embed

    if not embed.available():
        return None
    config = dataclasses.replace(app.config, relevance=app.config.relevance.model_copy(
        update={"representation": "semantic"}))
    papers = app.store.papers()
    started = time.process_time()
    kept = semantic_space(config, app.store).store_new(papers)
    took = (time.process_time() - started) * 1000 / max(kept, 1)
    name = config.subscription(ALICE).name
    held = {representation: len(App(c, store=app.store).held_back(name, days=1)[0])
            for representation, c in (("TF-IDF", app.config), ("MiniLM", config))}  # the same papers, both ways
    return (f"With the semantic extra installed: {kept} papers embedded once by all-MiniLM-L6-v2 and kept in the "
            f"database ({took:.0f} ms each). Over all of today's papers, Alice's votes would hold back "
            f"{held['MiniLM']} of her query's matches with them, {held['TF-IDF']} with TF-IDF (the default: it won "
            f"the relevance benchmark; `[relevance] representation = \"semantic\"` switches)")


class EditedPlayground(ConfigError):
    """The folder holds a demo config someone edited: running the demo would wipe their work (exit 2:
    nothing was done)."""


def prepare(folder: Path, *, reset: bool) -> Path:
    """The playground's config, written afresh; the previous pass's database and outbox removed. A config
    that is not the demo's own (edited, or an older demo's) is kept and refused unless `reset`."""
    path = folder / "config.toml"
    if path.exists() and not reset and path.read_text(encoding="utf-8", errors="replace") != DEMO_CONFIG:
        raise EditedPlayground(
            f"{path} is not the config the demo writes (edited since, or made by an older demo): running the demo "
            f"would wipe that playground. Keep playing with `digestbot -c {path} ...`, use another folder "
            f"(`digestbot demo --dir DIR`), or start it over with `digestbot demo --reset` (replaces its config, "
            f"listings, database and outbox)")
    folder.mkdir(parents=True, exist_ok=True)
    for old in ("demo.db", "demo.db-wal", "demo.db-shm", ".digestbot-databases.json"):
        (folder / old).unlink(missing_ok=True)
    shutil.rmtree(folder / "outbox", ignore_errors=True)
    listings = folder / "listings"
    if reset:
        shutil.rmtree(listings, ignore_errors=True)
    listings.mkdir(exist_ok=True)
    bundled = resources.files("digestbot.demo")
    for name in LISTINGS:
        (listings / name).write_bytes(bundled.joinpath(name).read_bytes())
    path.write_text(DEMO_CONFIG, encoding="utf-8")
    return path


def run_demo(folder: Path, report: Report, *, reset: bool = False) -> int:
    from .. import config as config_module
    from ..app import App
    from ..channels import outbox_channels
    from ..store import Store

    path = prepare(folder, reset=reset)
    config = config_module.load(path)
    with Store(config.database_url) as fresh:  # the demo starts from empty on purpose, like `init`
        fresh.create_tables()
    with App.from_config(config) as app:
        print(f"digestbot demo: reading {len(config.sources)} bundled sample listings (saved Hugging Face papers "
              f"pages in {path.parent / 'listings'}) for {len(config.subscriptions)} subscriptions")
        # Two passes, so that votes show: the first listings, Alice's votes on her digest, then the last
        # listing, whose digest her votes shaped (a paper her query missed, "like '…' that you marked ...").
        now = datetime.now(UTC)
        first = [app.poll(s.name, now) for s in config.sources[:-1]]
        sends = app.send_due(now)
        report(first, sends, sent_anything=True, outbox=outbox_channels(config))
        print(f"\n{vote_as_alice(app)}\n")
        later_on = now + timedelta(minutes=1)  # the next poll: a new period of her `instant` schedule
        polls = [app.poll(s.name, later_on) for s in config.sources[-1:]]
        later = app.send_due(later_on)
        report(polls, later, sent_anything=True, outbox=outbox_channels(config))
        print(f"\n{learned_choices(app)}")
        semantic = semantic_too(app)
        if semantic:
            print(f"\n{semantic}")
        polls = first + polls
        sends.sent += later.sent
        sends.failed += later.failed
    print(f"\n{sum(p.seen for p in polls)} papers read, {sum(p.new for p in polls)} new, "
          f"{sum(p.matched for p in polls)} matches, {len(sends.sent)} digests written (not sent: no [email] or "
          f"[slack] in the demo's config)")
    print(f"look at: {config.outbox}  (.eml opens in any mail program; .json is the Slack payload)")
    print(f"play:    digestbot -c {path} status   (subs add, subs test, run --once ... work on it too)")
    return 1 if sends.failed or any(p.error for p in polls) else 0
