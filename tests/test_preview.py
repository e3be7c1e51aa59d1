"""`digestbot preview NAME [--days N] [--out DIR]`: renders to files, sends nothing, changes no row."""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from digestbot import cli, pipeline
from digestbot import config as config_module
from digestbot.app import App
from digestbot.models import Paper

CONFIG = """
[bot]
database = "sqlite:///state.db"

[[subscriptions]]
name = "Decoding"
query = 'decoding'
email = ["a@example.org"]
slack = ["#decoding"]
schedule = "daily 08:00"
"""


def setup(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    ctx = App.from_config(config_module.load(path))
    now = datetime.now(UTC)
    pending = Paper(title="Speculative decoding <now>", abstract="Decoding is fast. We decode.", arxiv_id="2411.1",
                    published=now)
    quiet = Paper(title="Old decoding paper", abstract="Decoding, recorded without sending.", arxiv_id="2411.2",
                  published=now - timedelta(days=2))
    other = Paper(title="Unrelated vision paper", abstract="Pixels.", arxiv_id="2411.3", published=now)
    with ctx.store.write() as w:
        w.record_papers("test", [quiet], now - timedelta(days=2))  # like `run --once --no-send`
        stored = w.record_papers("test", [pending, other], now)
        ids = {p.key: i for i, p in stored}
        matches = ctx.matcher.match([p for _, p in stored])
        w.record_matches([(ids[m.paper.key], m) for m in matches], pipeline._all_targets(ctx.config), now)
    return path, ctx


def ledger(ctx):
    return ctx.store.delivery_counts(), [(r.period, r.status) for r in ctx.store.digests()]


def test_preview_renders_the_next_digest_without_touching_the_ledger(tmp_path, capsys):
    path, ctx = setup(tmp_path)
    before = ledger(ctx)
    out = tmp_path / "preview"
    assert cli.main(["-c", str(path), "preview", "Decoding", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "digest.html"), str(out / "digest.txt"), str(out / "slack.json")]
    html, text = (out / "digest.html").read_text(), (out / "digest.txt").read_text()
    posts = json.loads((out / "slack.json").read_text())
    assert "Speculative <mark" in html and "&lt;now&gt;" in html
    assert "1. Speculative *decoding* <now>" in text
    assert "Speculative decoding &lt;now&gt;" in json.dumps(posts)
    for body in (html, text, json.dumps(posts)):
        assert "Old decoding paper" not in body and "Unrelated" not in body
    assert ledger(ctx) == before and before[1] == []
    assert not (tmp_path / "outbox").exists()  # nothing sent


def test_preview_days_runs_the_query_over_stored_papers(tmp_path, capsys):
    path, ctx = setup(tmp_path)
    before = ledger(ctx)
    out = tmp_path / "p"
    assert cli.main(["-c", str(path), "preview", "decoding", "--days", "7", "--out", str(out)]) == 0
    text = (out / "digest.txt").read_text()
    assert "Old *decoding* paper" in text and "Speculative *decoding* <now>" in text and "Unrelated" not in text
    assert text.startswith("2 new papers on Decoding")
    assert ledger(ctx) == before


def test_preview_of_an_unknown_subscription_says_which_exist(tmp_path, capsys):
    path, _ = setup(tmp_path)
    assert cli.main(["-c", str(path), "preview", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "known: decoding" in capsys.readouterr().err


LIKE_CONFIG = """
[bot]
database = "sqlite:///state.db"

[topics.membership]
like = ["2411.00001"]
min_similarity = 0.1

[[subscriptions]]
name = "Privacy"
topics = ["membership"]
email = ["p@example.org"]
schedule = "daily 08:00"
"""


def test_preview_days_and_subs_test_agree_for_a_like_topic(tmp_path, capsys):
    """preview used to build the interest from the topics' queries, None for a `like` topic: an empty
    interest, which matched every paper (issue 17: 27 of 80 said subs test, all 80 said preview)."""
    path = tmp_path / "config.toml"
    path.write_text(LIKE_CONFIG)
    ctx = App.from_config(config_module.load(path))
    now = datetime.now(UTC)
    papers = [Paper(title="Membership inference attacks on language models", arxiv_id="2411.00001",
                    abstract="We infer whether a document was in the training data of a language model."),
              Paper(title="Document membership inference for large language models", arxiv_id="2411.00002",
                    abstract="Was this document in the training data? Membership inference says."),
              Paper(title="Diffusion models for image synthesis", arxiv_id="2411.00003",
                    abstract="Pixels and noise schedules for generating images."),
              Paper(title="Reinforcement learning for robot arms", arxiv_id="2411.00004",
                    abstract="Robots grasp objects with a learned policy.")]
    with ctx.store.write() as w:
        w.record_papers("test", papers, now)
    capsys.readouterr()
    assert cli.main(["-c", str(path), "subs", "test", "Privacy", "--days", "30"]) == 0
    tested = capsys.readouterr()
    assert "2 of 4 papers" in tested.err
    out = tmp_path / "p"
    assert cli.main(["-c", str(path), "preview", "Privacy", "--days", "30", "--out", str(out)]) == 0
    text = (out / "digest.txt").read_text()
    for paper in papers:
        assert (paper.title in tested.out) == (paper.title in text.replace("*", "")), paper.title
    assert "Diffusion" not in text and text.startswith("2 new papers on Privacy")
