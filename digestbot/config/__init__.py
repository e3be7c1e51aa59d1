"""Load the TOML config into validated, typed models; every problem reported as FILE:LINE: key: message.

Secrets never live in the file: `[email] password_env`, `[slack] token_env` and `signing_secret_env`, and
(for a database URL with a password) `[bot] database_env` name environment variables. Relative paths (the
SQLite file, the outbox, templates, text sources) are relative to the config file, so the bot behaves the
same whatever folder it is started from.
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from slugify import slugify

from .. import sources
from ..errors import ConfigError
from ..models import paper_key_of
from ..sources import SourceOptions
from ..sources.text import TextOptions
from . import alerts as alerts_section
from . import sendable
from .problems import Model, Problems, toml_syntax_error, unknown_section
from .tomlpos import Loc

if TYPE_CHECKING:
    from ..schedule import Schedule


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _no_newlines(value: str | None) -> str | None:
    """For values that end up in a mail header (other control characters: see sendable.py)."""
    if value is not None and ("\r" in value or "\n" in value):
        raise ValueError("must not contain a line break")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name like 'Europe/Berlin')") from None
    return value


class BotConfig(Strict):
    database: str = "sqlite:///digestbot.db"
    database_env: str | None = None  # or the environment variable holding the URL (it may carry a password)
    timezone: str = "UTC"
    outbox: str = "outbox"
    templates: str | None = None
    max_age_days: int = Field(default=7, ge=0)
    busy_timeout: float = Field(default=10.0, gt=0)
    send_lease: float = Field(default=600.0, gt=0)  # seconds before a digest stuck in `sending` is retried
    public_url: str | None = None  # goes into List-Unsubscribe
    _tz = field_validator("timezone")(_zone)
    _public_url = field_validator("public_url")(_no_newlines)


MAX_CONNECTIONS = 32  # [email] connections: more would look like an attack to most relays


class EmailConfig(Strict):
    host: str = "localhost"
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    sender: str
    timeout: float = Field(default=30.0, gt=0)
    # SMTP connections (and sender threads) of one process sending at once: a relay answers each message
    # in tens of milliseconds, and one connection carries one message at a time (sending.py)
    connections: int = 1

    @field_validator("connections")
    @classmethod
    def _connections(cls, value: int) -> int:
        if not 1 <= value <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be between 1 and {MAX_CONNECTIONS} (SMTP connections sending at "
                             f"once from one process; got {value})")
        return value

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        _no_newlines(value)
        name, addr = parseaddr(value)
        if "@" not in addr:
            raise ValueError(f"not an email address: {value!r} (e.g. 'Paper Digest <digest@example.org>')")
        return value

    @property
    def sender_address(self) -> Address:
        name, addr = parseaddr(self.sender)
        return Address(display_name=name, addr_spec=addr)


class SlackConfig(Strict):
    token_env: str = "SLACK_BOT_TOKEN"
    base_url: str | None = None
    min_interval: float = Field(default=1.0, ge=0)  # seconds between posts to one channel (Slack's tier)
    # The environment variable holding the Slack app's signing secret: set, Slack digests carry vote buttons
    # and `digestbot serve` answers them at /slack/actions (web/slack_actions.py)
    signing_secret_env: str | None = None


class RelevanceConfig(Strict):
    """How subscriptions learn from votes (relevance/): the representation papers are compared in."""
    representation: Literal["lexical", "semantic"] = "lexical"  # semantic: the `semantic` extra's embeddings
    model: str | None = None  # semantic: a directory with model.onnx + tokenizer.json (default: all-MiniLM-L6-v2)


class WebConfig(Strict):
    """`digestbot serve`: the readers' one-click links (web/). It speaks plain HTTP on `listen`, meant to
    sit behind a TLS reverse proxy that `bot.public_url` names."""
    listen: str = "127.0.0.1:8080"  # HOST:PORT
    secret_env: str | None = None  # the environment variable holding the links' signing secret
    allow_custom: bool = False  # the subscribe page (GET /) offers a query of one's own, not only public lists
    confirmations_per_address_per_day: int = Field(default=3, ge=1)  # subscribe-page mails to one address
    subscribes_per_ip_per_hour: int = Field(default=20, ge=1)  # subscribe-page requests per client (per process)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected HOST:PORT (e.g. '127.0.0.1:8080'), got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class TopicConfig(Strict):
    query: str = ""
    like: list[str] = []  # arXiv ids of example papers: interest by example (TF-IDF similarity)
    min_similarity: float = Field(default=0.12, gt=0, le=1)

    @field_validator("like")
    @classmethod
    def _paper_keys(cls, values: list[str]) -> list[str]:
        return [paper_key_of(value) for value in values]  # links and "arXiv:...v2" as people paste them

    @model_validator(mode="after")
    def _query_or_like(self) -> TopicConfig:
        if not self.query.strip() and not self.like:
            raise ValueError("give a query, or like = [arXiv ids of example papers]")
        return self


class SubscriptionConfig(Strict):
    name: str = Field(min_length=1)
    query: str = ""
    topics: list[str] = []
    email: list[str] = []
    slack: list[str] = []
    schedule: str = "daily 08:00"
    timezone: str | None = None
    max_papers: int = Field(default=15, ge=1, le=500)
    send_empty: bool = False
    paused: bool = False  # no digests while true (its reader's manage page sets it); matches wait for the resume
    slack_webhook: str | None = None  # an incoming-webhook URL (it posts to one fixed channel)
    slack_webhook_env: str | None = None  # or the environment variable holding it (it is a secret)
    listing_url: str | None = None  # where "and N more" links (default: the Hugging Face papers page)
    public: bool = False  # listed on the subscribe page (`digestbot serve`, GET /): anyone may ask to get it
    description: str | None = None  # what the subscribe page says of it (may span lines)
    owner: str | None = None  # the address that made it on the subscribe page with its own query
    learn: bool = True  # readers' votes change the selection (README "What your votes do"); false: the query alone

    _name = field_validator("name")(_no_newlines)

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and ("@" not in parseaddr(_no_newlines(value) or "")[1]):
            raise ValueError(f"not an email address: {value!r}")
        return value

    @field_validator("slack_webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// incoming-webhook URL")
        return value
    _tz = field_validator("timezone")(lambda v: v if v is None else _zone(v))

    @field_validator("email")
    @classmethod
    def _emails(cls, values: list[str]) -> list[str]:
        for value in values:
            _no_newlines(value)
            if "@" not in parseaddr(value)[1]:
                raise ValueError(f"not an email address: {value!r}")
        return values

    @field_validator("slack")
    @classmethod
    def _channels(cls, values: list[str]) -> list[str]:
        for value in values:
            _no_newlines(value)
        return values

    @cached_property  # on every digest's hot path; a subscription's name never changes once loaded
    def id(self) -> str:
        return slugify(self.name)


@dataclass
class Config:
    path: Path
    bot: BotConfig
    email: EmailConfig | None
    slack: SlackConfig | None
    sources: list[SourceOptions]
    topics: dict[str, TopicConfig]
    subscriptions: list[SubscriptionConfig]
    web: WebConfig = field(default_factory=WebConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    alerts: alerts_section.AlertsConfig | None = None  # [alerts]: who hears about failing sources (alerts.py)
    schedules: dict[str, Schedule] = field(default_factory=dict)  # subscription id -> schedule
    text: str = ""  # the file as read, for FILE:LINE messages

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    @property
    def database_url(self) -> str:
        url = self._database_setting()
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url[len(prefix):].startswith(("/", ":memory:")):
            return prefix + str(self.resolve(url[len(prefix):]))
        return url

    def _database_setting(self) -> str:
        env = self.bot.database_env
        if not env:
            return self.bot.database
        value = os.environ.get(env, "").strip()
        if not value:
            problems = Problems(self.path, self.text)
            problems.add(("bot", "database_env"), f"environment variable {env} is not set: set it to the "
                         f"database URL (e.g. postgresql+psycopg://user:password@host/db)")
            raise ConfigError(problems.lines)
        return value

    @property
    def outbox(self) -> Path:
        return self.resolve(self.bot.outbox)

    @property
    def outbox_wanted(self) -> bool:
        """Whether digests of a channel whose section ([email], [slack]) is absent go to the outbox: when
        `[bot] outbox` is written in the file, or when the config has neither section (a try-out config,
        the demo). Otherwise such digests are a config problem, not files nobody reads counted as sent."""
        return "outbox" in self.bot.model_fields_set or (self.email is None and self.slack is None)

    def subscription(self, name_or_id: str) -> SubscriptionConfig:
        for sub in self.subscriptions:
            if name_or_id in (sub.name, sub.id):
                return sub
        known = ", ".join(s.id for s in self.subscriptions) or "none configured"
        raise ConfigError(f"{self.path}: no subscription {name_or_id!r} (known: {known})")

    def source(self, name: str) -> SourceOptions:
        for options in self.sources:
            if options.name == name:
                return options
        known = ", ".join(s.name for s in self.sources) or "none configured"
        raise ConfigError(f"{self.path}: no source {name!r} (known: {known})")

    def link_secret(self) -> bytes | None:
        """The secret signing readers' links (web/tokens.py); None when `[web] secret_env` is not set.
        ConfigError when it names a variable that is not set (a link signed with nothing is no link)."""
        value = self.secret(self.web.secret_env, "web.secret_env (the secret signing readers' links)")
        return value.encode("utf-8") if value else None

    def secret(self, env_name: str | None, what: str) -> str | None:
        if not env_name:
            return None
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(f"{self.path}: {what}: environment variable {env_name} is not set")
        return value


def load(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one from config.example.toml, "
                          f"or pass -c / set DIGESTBOT_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc}") from None
    return loads(text, path)


def loads(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(toml_syntax_error(path, exc, text)) from None
    problems = Problems(path, text)
    data = sendable.cleaned(data, problems)
    for key in data.keys() - SECTIONS.keys():
        problems.add((key,), unknown_section(key, SECTIONS), at="header")

    def section(key: str, model: type[Model], default: dict[str, Any] | None) -> Model | None:
        return problems.validate(model, data.get(key, default), (key,))

    subscriptions = [problems.validate(SubscriptionConfig, table, ("subscriptions", i))
                     for i, table in enumerate(_tables(data, "subscriptions", problems))]
    # Where each valid one is in the file: an invalid table is left out, so list positions and the file's differ.
    places = Places(subscriptions=[i for i, sub in enumerate(subscriptions) if sub is not None])
    topics = {name: problems.validate(TopicConfig, table, ("topics", name))
              for name, table in _named_tables(data, "topics", problems).items()}
    config = Config(path=path.resolve(), bot=section("bot", BotConfig, {}) or BotConfig(),
                    email=section("email", EmailConfig, None) if "email" in data else None,
                    slack=section("slack", SlackConfig, None) if "slack" in data else None,
                    sources=_sources(_tables(data, "sources", problems), problems, places),
                    topics={k: v for k, v in topics.items() if v is not None},
                    subscriptions=[s for s in subscriptions if s is not None],
                    web=section("web", WebConfig, {}) or WebConfig(), text=text,
                    relevance=section("relevance", RelevanceConfig, {}) or RelevanceConfig(),
                    alerts=section("alerts", alerts_section.AlertsConfig, None) if "alerts" in data else None)
    _cross_check(config, problems, places)
    alerts_section.check(config.alerts, has_email=config.email is not None, has_slack=config.slack is not None,
                         problems=problems)
    if problems.lines:
        raise problems.error()
    return config


@dataclass
class Places:
    """The index in the file ([[sources]] / [[subscriptions]] number) of each valid source and subscription."""
    subscriptions: list[int] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)


SECTIONS = {"bot": "table", "email": "table", "slack": "table", "sources": "array of tables",
            "topics": "tables", "subscriptions": "array of tables", "web": "table", "alerts": "table",
            "relevance": "table"}


def _tables(data: dict[str, Any], key: str, problems: Problems) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, dict):  # `[subscriptions]`: one table, where each entry needs its own
        problems.add((key,), f"write [[{key}]] (two brackets) above each of the {key}, not [{key}]", at="header")
        return []
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        problems.add((key,), f"must be written as [[{key}]] tables")
        return []
    return value


def _named_tables(data: dict[str, Any], key: str, problems: Problems) -> dict[str, dict[str, Any]]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(t, dict) for t in value.values()):
        problems.add((key,), f"must be written as [{key}.NAME] tables")
        return {}
    return value


def check_secrets(config: Config) -> list[str]:
    """Secrets the config names but the environment lacks (FILE:LINE: key: message lines)."""
    problems = Problems(config.path, config.text)
    if config.email and config.email.username and not config.email.password_env:
        problems.add(("email", "username"), "set password_env too (the variable holding the password)")
    wanted: list[tuple[Loc, str, str]] = []
    if config.bot.database_env:
        wanted.append((("bot", "database_env"), config.bot.database_env, "needed to open the database"))
    if config.email and config.email.password_env:
        wanted.append((("email", "password_env"), config.email.password_env, "needed to send"))
    if config.slack:
        wanted.append((("slack", "token_env"), config.slack.token_env, "needed to send"))
        if config.slack.signing_secret_env:
            wanted.append((("slack", "signing_secret_env"), config.slack.signing_secret_env,
                           "needed to check Slack's button clicks in `digestbot serve`"))
    if config.web.secret_env:
        wanted.append((("web", "secret_env"), config.web.secret_env, "needed to sign readers' links"))
    for i, sub in enumerate(config.subscriptions):
        if sub.slack_webhook_env:
            wanted.append((("subscriptions", i, "slack_webhook_env"), sub.slack_webhook_env, "needed to send"))
    if config.bot.public_url and not config.web.secret_env:
        problems.add(("bot", "public_url"), "set [web] secret_env too: without the secret that signs them, mails "
                     "carry no one-click unsubscribe link (only a mailto)")
    for loc, env, why in wanted:
        if not os.environ.get(env, "").strip():
            problems.add(loc, f"environment variable {env} is not set ({why})")
    return problems.lines


def check_queries(config: Config, subscription: str | None = None) -> list[str]:
    """Queries that parse but cannot mean what was typed (matching.query_warnings: `llm or vlm`,
    `speculative ANDD decoding`), as FILE:LINE: key: warning lines, each with the query and a caret.
    `subscription` (an id): that subscription's query alone."""
    from ..matching import query_warnings

    problems = Problems(config.path, config.text)
    queries: list[tuple[Loc, str]] = []
    if subscription is None:
        queries += [(("topics", name, "query"), topic.query) for name, topic in config.topics.items()]
    queries += [(("subscriptions", i, "query"), sub.query) for i, sub in enumerate(config.subscriptions)
                if subscription in (None, sub.id)]
    for loc, query in queries:
        for warning in query_warnings(query):
            problems.add(loc, str(warning))
    return problems.lines


def _sources(raw: list[dict[str, Any]], problems: Problems, places: Places) -> list[SourceOptions]:
    kinds = sources.load_all()
    result = []
    for i, table in enumerate(raw):
        kind = table.get("kind")
        if kind not in kinds:
            problems.add(("sources", i, "kind"), f"unknown source kind {kind!r}; one of: {', '.join(sorted(kinds))}")
            continue
        options = problems.validate(kinds[kind].Options, table, ("sources", i))
        if options is not None:
            result.append(options)
            places.sources.append(i)
    return result


_UNIT_WORDS = {"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s", "m": "m", "min": "m", "mins": "m",
               "minute": "m", "minutes": "m", "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h", "d": "d",
               "day": "d", "days": "d"}


def _interval_advice(every: str) -> str:
    """A source's `every` that does not parse: the value it was probably meant to be."""
    words = every.lower().removeprefix("every").strip()
    found = re.fullmatch(r"(\d+)\s*([a-z]+)", words)
    unit = _UNIT_WORDS.get(found.group(2)) if found else None
    example = f"{int(found.group(1))}{unit}" if found and unit else "15m"
    guess = "write" if found and unit else "e.g."
    return (f"{every!r} is not an interval: {guess} every = \"{example}\" (a number and s, m, h or d: \"30s\", "
            f"\"15m\", \"2h\", \"1d\"), or cron = \"...\" for fixed times")


def _cross_check(config: Config, problems: Problems, places: Places) -> None:
    # Imported here, not at the top: a render child (render/apart.py) unpickles a Config and never checks
    # one, and would carry their imports for nothing (APScheduler's are 10 MB).
    from ..matching import QuerySyntaxError
    from ..matching import parse_query as parse
    from ..schedule import parse_schedule

    valid: set[str] = set()  # a query many subscriptions share is parsed once per load

    def parse_query(query: str) -> None:
        if query not in valid:
            parse(query)
            valid.add(query)

    if config.bot.database_env and "database" in config.bot.model_fields_set:
        problems.add(("bot", "database_env"), "give database or database_env, not both")
    _unique([s.name for s in config.sources], places.sources, "sources", "name", "source", problems)
    _unique([s.id for s in config.subscriptions], places.subscriptions, "subscriptions", "name", "subscription",
            problems)
    for i, options in zip(places.sources, config.sources, strict=True):
        try:
            parse_schedule(f"every {options.every}" if not options.cron else options.cron, "UTC")
        except ValueError as exc:
            if options.cron:
                problems.add(("sources", i, "cron"), str(exc))
            else:
                problems.add(("sources", i, "every"), _interval_advice(str(options.every)), at="value")
        if isinstance(options, TextOptions) and options.path:
            options.path = str(config.resolve(options.path))
    for name, topic in config.topics.items():
        if name != slugify(name):
            problems.add(("topics", name), f"topic names are slugs: use {slugify(name)!r}")
        try:
            parse_query(topic.query)
        except QuerySyntaxError as exc:
            problems.add(("topics", name, "query"), "invalid query:\n" + str(exc))
    for i, sub in zip(places.subscriptions, config.subscriptions, strict=True):
        _check_subscription(config, i, sub, problems, parse_query, QuerySyntaxError, parse_schedule)


def _check_subscription(config: Config, i: int, sub: SubscriptionConfig, problems: Problems,
                        parse_query: Callable[[str], None], QuerySyntaxError: type[Exception],
                        schedule: Callable[[str, str], Schedule]) -> None:
    if not sub.id:  # the id keys the subscription's history in the database and its readers' links
        problems.add(("subscriptions", i, "name"), f"the name {sub.name!r} makes an empty id (the id is the name's "
                     f"letters and digits, e.g. 'Alice LLM' -> 'alice-llm'): use a name with letters or digits")
    try:
        parse_query(sub.query)
    except QuerySyntaxError as exc:
        problems.add(("subscriptions", i, "query"), "invalid query:\n" + str(exc))
    for topic in sub.topics:
        if topic not in config.topics:
            known = ", ".join(config.topics) or "none defined"
            problems.add(("subscriptions", i, "topics"), f"no topic {topic!r} (defined: {known})")
    try:
        config.schedules[sub.id] = schedule(sub.schedule, sub.timezone or config.bot.timezone)
    except ValueError as exc:
        problems.add(("subscriptions", i, "schedule"), str(exc))
    if sub.slack_webhook and sub.slack_webhook_env:
        problems.add(("subscriptions", i, "slack_webhook"), "give slack_webhook or slack_webhook_env, not both")
    for key, section in (("email", config.email), ("slack", config.slack)):
        if getattr(sub, key) and section is None and not config.outbox_wanted:
            problems.add(("subscriptions", i, key),
                         f"{key} = [...] but the config has no [{key}] section, so these digests could not be "
                         f"sent: add [{key}], or set outbox = \"outbox\" in [bot] to write them to files instead")
    if not sub.email and not sub.slack and not sub.slack_webhook and not sub.slack_webhook_env:
        problems.add(("subscriptions", i, "name"),
                     "no recipient: give email = [...], slack = [...] and/or slack_webhook(_env)")


def _unique(names: list[str], places: list[int], table: str, key: str, what: str, problems: Problems) -> None:
    seen: set[str] = set()
    for i, name in zip(places, names, strict=True):
        if name in seen:
            problems.add((table, i, key), f"another {what} already has this name ({name!r})")
        seen.add(name)
