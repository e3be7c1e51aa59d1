"""The front door: `App.from_config(path)` builds every part of an installation and runs its job.

    app = App.from_config("config.toml")      # config, store, http, matcher, renderer, channels
    polls, sends = app.run_once()              # poll every source, send what is due
    app.preview("Decoding", out=Path("p"))     # a subscription's next digest, as files

Every entry point starts here: each command of the command line (cli/), the daemon (daemon.py),
the demo, the tests and benchmarks, and the web process to come. The stages themselves are in
pipeline.py (poll, send), preview.py and daemon.py; an App is the parts they work on
(`pipeline.Context`) and knows how to build them from a config.
"""
from __future__ import annotations

import dataclasses
import html
from datetime import UTC, datetime
from email.utils import make_msgid
from functools import cached_property, partial
from pathlib import Path
from types import TracebackType

from . import channels, daemon, pipeline, preview, sources
from . import config as config_module
from .channels import Envelope
from .channels import opener as channel_opener
from .config import Config
from .errors import ConfigError
from .http import Http
from .matching import Interest, Matcher, PaperMatcher
from .matching.similar import SimilarityMatcher, SimilarTopic
from .models import Match, Message, Paper, SlackPost, SourceMemory
from .relevance import HeldBack, Learner, LearningMatcher, LexicalSpace, Space
from .relevance.embed import MODEL_NAME, EmbeddingSpace  # the extra's modules load only when it is used
from .render import Renderer
from .store import Initialised, Revision, Store, Upgraded, init_database, open_store

SIMILARITY_CORPUS = 5000  # recent papers whose word frequencies weigh the `like` topics
RARITY_SAMPLE = 2000  # recent papers whose word frequencies pick the matcher's index keys


def now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class TestSent:
    """What `App.send_test` did: through which channel kind, and what the server answered."""
    ledger_channel: str  # email | slack
    kind: str  # the transport: smtp | slack | file (the outbox, when the config has no section for it)
    target: str
    server_id: str  # the Message-ID, the Slack ts, the outbox file
    reply: str  # the SMTP reply to the final ".", "ok: ts ... in channel ...", "written to ..."


class App:
    """An installation: its config and the parts built from it, over one database and one HTTP client.

    It is what the stages work on (`pipeline.Context`). The database is opened, and the matcher built,
    when `from_config` returns (so a missing database fails at once), or on first use with
    `open_database=False` (the commands that look after the database itself: init, db, sources check)."""

    def __init__(self, config: Config, *, http: Http | None = None, store: Store | None = None,
                 create: bool = True, send_backlog: bool = True):
        self.config = config
        self.create = create  # False: a missing database is an error (read-only commands), see open_store
        # False (`digestbot run` without --send-backlog): a source's first poll in a new database records
        # what it lists without sending it (pipeline.poll); the library's own default sends it.
        self.send_backlog = send_backlog
        self.http = http or Http()
        templates = config.resolve(config.bot.templates) if config.bot.templates else None
        self.renderer = Renderer(templates)
        self.open_channel = channel_opener(config)  # ledger channel -> the channel carrying it
        if store is not None:
            self.store = store

    @classmethod
    def from_config(cls, config: Config | str | Path, *, http: Http | None = None, store: Store | None = None,
                    open_database: bool = True, create: bool = True, send_backlog: bool = True) -> App:
        """Build everything `config` (a loaded Config or the path of its file) describes. The database is
        opened (a new installation's is created, unless `create=False`; an older one upgraded); `http` and
        `store`, when given, are shared instead (the daemon keeps both across config reloads).
        `send_backlog=False`: see pipeline.poll (a new database's first polls send nothing)."""
        app = cls(config if isinstance(config, Config) else config_module.load(config), http=http, store=store,
                  create=create, send_backlog=send_backlog)
        if open_database:
            app.matcher  # noqa: B018  (opens the store and builds the matcher now, see the class)
        return app

    @cached_property
    def store(self) -> Store:
        config = self.config
        return open_store(config.database_url, config.path, busy_timeout=config.bot.busy_timeout, create=self.create)

    @cached_property
    def matcher(self) -> PaperMatcher:
        return build_matcher(self.config, self.store)

    def reconfigured(self, config: Config) -> App:
        """The same installation under an edited config: same database and HTTP client, new parts."""
        return App.from_config(config, http=self.http, store=self.store, send_backlog=self.send_backlog)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the job ------------------------------------------------------------------------------------

    def run_once(self, at: datetime | None = None, *,
                 send: bool = True) -> tuple[list[pipeline.PollResult], pipeline.SendResult]:
        """Poll every source once, then (with `send`) send every digest that is due."""
        return pipeline.run_once(self, at or now(), send=send)

    def poll(self, source: str, at: datetime | None = None) -> pipeline.PollResult:
        return pipeline.poll(self, source, at or now())

    def send_due(self, at: datetime | None = None) -> pipeline.SendResult:
        return pipeline.send_due(self, at or now())

    def serve(self, *, send: bool = True) -> None:
        """The daemon: poll and send on schedule until stopped; config edits are applied as they are saved.
        `send=False`: it only polls and records (`run --no-send`)."""
        daemon.serve(daemon.Live(self, self.reconfigured, send=send))

    # --- looking before sending ---------------------------------------------------------------------

    def matcher_of(self, name: str) -> PaperMatcher:
        """The matcher of one subscription alone, built as the daemon builds its own (queries, topics and
        `like` topics): what `subs test` and `preview --days` run, so the two always agree."""
        only = dataclasses.replace(self.config, subscriptions=[self.config.subscription(name)])
        return build_matcher(only, self.store)

    def test_subscription(self, name: str, days: float) -> tuple[list[Match], int]:
        """What the subscription would select among the papers first seen in the last `days` days, best
        first, and how many papers that was."""
        papers = self.store.papers(days=days)
        matches = self.matcher_of(name).match(papers)
        return sorted(matches, key=lambda m: (-m.score, -m.paper.upvotes)), len(papers)

    def embed_new(self, papers: list[Paper]) -> None:
        """Right after a poll stored `papers`: their sentence embeddings, once, into the database (only
        for `[relevance] representation = "semantic"`; the lexical one is recomputed when needed)."""
        if papers and self.config.relevance.representation == "semantic":
            semantic_space(self.config, self.store).store_new(papers)

    def polled(self) -> None:
        """Let the matcher go (pipeline.run_once, before its send pass): at 50,000 subscriptions its compiled
        queries are ~120 MB, and that room is what the send pass then fills instead of growing the process.
        A daemon keeps its matcher from poll to poll (compiled once, not once a poll)."""
        self.__dict__.pop("matcher", None)

    def held_back(self, name: str, days: float) -> tuple[list[HeldBack], int]:
        """The papers of the last `days` days that the subscription's query matches but its readers' votes
        hold back, each with its reason, and how many papers were looked at."""
        papers = self.store.papers(days=days)
        matcher = self.matcher_of(name)
        matcher.match(papers)
        return (matcher.held_back if isinstance(matcher, LearningMatcher) else []), len(papers)

    def preview(self, name: str, out: Path, *, days: float | None = None, at: datetime | None = None) -> list[Path]:
        """Render the subscription's next digest (with `days`: what the last N days would give) into `out`."""
        sub = self.config.subscription(name)
        matches = self.store.pending_matches(sub.id) if days is None else self.test_subscription(name, days)[0]
        return preview.preview(self.config, self.renderer, sub, matches, at or now(), out=out)

    # --- looking after the installation ---------------------------------------------------------------

    def send_test(self, target: str, at: datetime | None = None) -> TestSent:
        """One small message to `target` (an address, or a Slack channel `#name`) through the channel the
        config sets up for it, exactly as a digest to it would go (`digestbot send-test`); nothing is
        recorded. DeliveryError when the server refuses or cannot be reached; ConfigError when `target` is
        neither an address nor a channel, or a secret the channel needs is not set."""
        ledger_channel = "slack" if target.startswith("#") else "email" if "@" in target else None
        if ledger_channel is None:
            raise ConfigError(f"{target!r}: give an email address (alice@example.org) or a Slack "
                              f"channel ('#papers', quoted for the shell)")
        kind = channels.kind_for(self.config, ledger_channel)
        sent_at = at or now()
        domain = self.config.email.sender_address.domain if self.config.email else "digestbot.localhost"
        text = (f"A test message from digestbot, sent {sent_at:%Y-%m-%d %H:%M} UTC with `digestbot send-test` "
                f"(config {self.config.path}). If you can read it, digests to {target} will arrive too.")
        message = Message(subject="digestbot test message", text=text + "\n",
                          html=f"<!doctype html><p>{html.escape(text)}</p>",
                          slack_posts=[SlackPost(text=text, blocks=[{"type": "section",
                                                                     "text": {"type": "mrkdwn", "text": text}}])])
        envelope = Envelope(target=target, subscription="digestbot test", subscription_id="send-test",
                            message_id=make_msgid("send-test", domain=domain),
                            list_id=f"digestbot test <send-test.{domain}>")
        with channels.build(self.config, ledger_channel) as channel:
            server_id = channel.send(message, envelope)
            return TestSent(ledger_channel, kind, target, server_id, channel.last_reply)

    def check_source(self, name: str, at: datetime | None = None) -> list[Paper]:
        """What one source lists now, fetched and parsed as a poll would; nothing is stored."""
        return sources.build(self.config.source(name), self.http).collect(at or now(), SourceMemory())

    def init_database(self, *, force: bool = False) -> Initialised:
        """Create the database on purpose (see store.init_database); use with `open_database=False`."""
        config = self.config
        return init_database(config.database_url, config.path, force=force, busy_timeout=config.bot.busy_timeout)

    def schema_revision(self) -> Revision:
        """Which schema revision the database has; changes nothing (use with `open_database=False`)."""
        with self._unupgraded() as store:
            return store.revision()

    def upgrade_schema(self) -> Upgraded | None:
        """Upgrade the schema to this version's (SQLite: copied first); None: it was the newest already."""
        with self._unupgraded() as store:
            return store.upgrade()

    def _unupgraded(self) -> Store:
        config = self.config
        return Store.open_existing(config.database_url, busy_timeout=config.bot.busy_timeout, upgrade=False)


def interests(config: Config) -> list[Interest]:
    """What the query matcher evaluates. A subscription whose only interests are `like` topics is left
    out: an empty query would otherwise mean "every paper"; the similarity matcher serves it."""
    result = []
    for sub in config.subscriptions:
        topics = tuple((t, query) for t in sub.topics if (query := config.topics[t].query))
        if sub.query or topics or not sub.topics:
            result.append(Interest(sub.id, sub.query, topics))
    return result


def build_matcher(config: Config, store: Store) -> PaperMatcher:
    # Rare words make selective index keys; recent papers say which words are rare (faster only:
    # the matches never depend on the sample).
    matcher: PaperMatcher = Matcher(interests(config), sample=store.papers(limit=RARITY_SAMPLE))
    like = [SimilarTopic(name, tuple(t.like), t.min_similarity) for name, t in config.topics.items() if t.like]
    if like:
        users = {t.name: [s.id for s in config.subscriptions if t.name in s.topics] for t in like}
        matcher = SimilarityMatcher(matcher, like, users, corpus=lambda: store.papers(limit=SIMILARITY_CORPUS),
                                    examples=store.papers_by_keys)
    learners = [Learner(s.id, {key: t for t in s.topics for key in config.topics[t].like})
                for s in config.subscriptions if s.learn]
    if not learners:
        return matcher
    return LearningMatcher(matcher, learners, votes=store.votes_by_subscription, papers_by_keys=store.papers_by_keys,
                           space=partial(space, config, store))


def space(config: Config, store: Store) -> Space:
    """The representation votes are learned in ([relevance] representation; README "What your votes do")."""
    if config.relevance.representation == "semantic":
        return semantic_space(config, store)
    return LexicalSpace(store.papers(limit=SIMILARITY_CORPUS))  # cheap: recomputed at each poll, never stored


def semantic_space(config: Config, store: Store) -> EmbeddingSpace:
    """Sentence embeddings, each paper's computed once and kept in the database (the `embedding` table)."""
    name = config.relevance.model or MODEL_NAME
    return EmbeddingSpace(config.relevance.model, stored=partial(store.embeddings, name),
                          keep=partial(store.keep_embeddings, name))
