"""Builders for rendering tests: real papers from tests/data/daily_papers.json, the real matcher,
a config loaded from TOML text; everything deterministic (a fixed clock, fixed dates)."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from fixtures import daily_items

from digestbot import config as config_module
from digestbot.digest import make_digest
from digestbot.errors import ParseError
from digestbot.matching import Interest, Matcher
from digestbot.models import Digest, Match, Paper
from digestbot.sources.hf_json import parse_items_json

NOW = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)
QUERY = 'inference OR "language model" OR quantiz*'
TOPIC = '"speculative decoding" OR "kv cache" OR reasoning'

CONFIG = """\
[bot]
database = "sqlite:///state.db"
timezone = "Europe/Berlin"
public_url = "https://digest.example.org"

[web]
secret_env = "DIGESTBOT_TEST_LINK_SECRET"

[email]
host = "127.0.0.1"
sender = "Paper Digest <digest@example.org>"

[slack]
token_env = "SLACK_BOT_TOKEN"

[topics.efficient-inference]
query = '{topic}'

[[subscriptions]]
name = "LLM inference"
query = '{query}'
topics = ["efficient-inference"]
email = ["alice@example.org"]
slack = ["#llm"]
schedule = "daily 08:00"
max_papers = {max_papers}
"""


def papers(count: int | None = None) -> list[Paper]:
    items = daily_items(count, published=datetime(2026, 11, 20, tzinfo=UTC).date())
    return parse_items_json(json.dumps(items).encode(), lambda m: ParseError(m), "test")


def config(tmp_path: Path, max_papers: int = 5) -> config_module.Config:
    text = CONFIG.format(query=QUERY, topic=TOPIC, max_papers=max_papers)
    return config_module.loads(text, tmp_path / "config.toml")


def matches(items: list[Paper], query: str = QUERY, topic: str = TOPIC) -> list[Match]:
    interest = Interest("llm-inference", query, (("efficient-inference", topic),))
    return Matcher([interest]).match(items)


def digest(tmp_path: Path, items: list[Paper] | None = None, max_papers: int = 5) -> Digest:
    cfg = config(tmp_path, max_papers)
    found = matches(papers() if items is None else items)
    return make_digest(cfg, cfg.subscriptions[0], found, channel="email",
                       period_key="2026-11-22T08:00", now=NOW)
