"""The whole job as a user runs it: `digestbot run --once` in a subprocess against real loopback servers.

Hugging Face is played by HttpServer serving daily_papers pages built from the saved listings; mail goes
to a real aiosmtpd server; Slack posts go through the real slack_sdk client to SlackServer. The expected
recipients are computed here with an independent, straightforward evaluation of each query.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures import daily_items
from markupsafe import escape

HOSTILE_TITLE = "Fast <script>alert(1)</script> LLM inference & <!channel> decoding"


def words(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.lower()))


def fields(paper: dict) -> tuple[list[str], list[str]]:
    return (re.findall(r"[^\W_]+", paper["title"].lower()), re.findall(r"[^\W_]+", paper["summary"].lower()))


def has_phrase(paper: dict, phrase: str) -> bool:
    """A phrase matches inside one field (title or abstract), never across the two."""
    return any(f" {phrase} " in f" {' '.join(field)} " for field in fields(paper))


def any_word(paper: dict) -> set[str]:
    title, abstract = fields(paper)
    return set(title) | set(abstract)


# Each subscription, and next to it the same query written as plain Python (the oracle).
SUBSCRIPTIONS = {
    "alice": ('inference AND (llm OR llms) NOT survey', ["alice@example.org"], ["#alice"],
              lambda p: "inference" in any_word(p) and bool({"llm", "llms"} & any_word(p))
              and "survey" not in any_word(p)),
    "privacy": ('privacy -federated', ["priv@example.org"], [],
                lambda p: "privacy" in any_word(p) and "federated" not in any_word(p)),
    "bayes": ('"bayesian inference" OR (gaussian AND process)', ["bayes@example.org"], ["#bayes"],
              lambda p: has_phrase(p, "bayesian inference") or {"gaussian", "process"} <= any_word(p)),
}


def expected(items: list[dict], name: str) -> set[str]:
    predicate = SUBSCRIPTIONS[name][3]
    return {" ".join(i["paper"]["title"].split()) for i in items if predicate(i["paper"])}


def write_config(tmp: Path, hf_url: str, smtp_port: int, slack_url: str) -> Path:
    subs = []
    for name, (query, email, slack, _) in SUBSCRIPTIONS.items():
        subs.append(f"""
[[subscriptions]]
name = "{name}"
query = '{query}'
email = {json.dumps(email)}
slack = {json.dumps(slack)}
schedule = "instant"
max_papers = 200
""")
    path = tmp / "config.toml"
    path.write_text(f"""
[bot]
database = "sqlite:///state/digestbot.db"

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Paper Digest <digest@example.org>"

[slack]
token_env = "E2E_SLACK_TOKEN"
base_url = "{slack_url}"

[[sources]]
name = "hf-daily"
kind = "hf_daily"
url = "{hf_url}/api/daily_papers"
limit = 10
""" + "".join(subs))
    (tmp / "state").mkdir(exist_ok=True)
    return path


def run_once(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "E2E_SLACK_TOKEN": "xoxb-test"}
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(config), "run", "--once", "--send-backlog"],
                          capture_output=True, text=True, env=env, timeout=120)


def mail_for(smtp, address: str) -> list:
    return [r.message for r in smtp.received if address in r.rcpt_tos]


def escape_text(title: str) -> str:
    """A title as escaped text in HTML, quotes left plain (escapers differ on quotes, never on & < >)."""
    return str(escape(title)).replace("&#39;", "'").replace("&#34;", '"')


def assert_titles(message, titles: set[str], absent: set[str]) -> None:
    # Matched terms are highlighted (*term* in text, <mark> in HTML): compare the titles without marks.
    text = message.get_body(("plain",)).get_content().replace("*", "")
    html = re.sub(r"</?mark\b[^>]*>", "", message.get_body(("html",)).get_content())
    html = html.replace("&#39;", "'").replace("&#34;", '"')
    for title in titles:
        assert title in text, title
        assert escape_text(title) in html, title
    for title in absent:
        assert title not in text, title
        assert escape_text(title) not in html, title


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(post: dict, thread: list[dict] = ()) -> str:
    """The sections of a top-level post and of its thread (long digests continue there)."""
    replies = [p for p in thread if p["thread_ts"] == post["ts"]]
    return "\n".join(b["text"]["text"] for p in [post, *replies] for b in p["blocks"] if b["type"] == "section")


def top_level(slack) -> list[dict]:
    return [p for p in slack.posts if not p["thread_ts"]]


@pytest.fixture
def world(tmp_path, http_server, smtp_server, slack_server):
    today = datetime.now(UTC).date()
    items = daily_items(60, published=today)
    hostile = daily_items(1, published=today)[0]
    hostile["paper"].update(id="2411.99999", title=HOSTILE_TITLE, upvotes=1)
    hostile["title"] = HOSTILE_TITLE
    first = {str(today - timedelta(days=1)): items[:25], str(today): items[25:45] + [hostile]}
    http_server.daily_papers(first)
    config = write_config(tmp_path, http_server.url, smtp_server.port, slack_server.base_url)
    init = subprocess.run([sys.executable, "-m", "digestbot", "-c", str(config), "init"], capture_output=True,
                          text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    return {"config": config, "http": http_server, "smtp": smtp_server, "slack": slack_server,
            "today": today, "items": items, "served": first, "hostile": hostile}


def served_items(served: dict) -> list[dict]:
    return [item for day in served.values() for item in day]


def all_titles(items: list[dict]) -> set[str]:
    return {" ".join(i["paper"]["title"].split()) for i in items}


def test_each_subscriber_gets_exactly_its_papers_once_and_only_new_ones_later(world):
    smtp, slack = world["smtp"], world["slack"]
    result = run_once(world["config"])
    assert result.returncode == 0, result.stdout + result.stderr
    served = served_items(world["served"])
    titles = all_titles(served)
    for name, (_, emails, channels, _) in SUBSCRIPTIONS.items():
        want = expected(served, name)
        assert want, f"fixture gives {name} nothing to match"
        for address in emails:
            [message] = mail_for(smtp, address)
            assert_titles(message, want - {HOSTILE_TITLE}, titles - want)
        for channel in channels:
            [post] = [p for p in top_level(slack) if p["channel"] == channel]
            body = slack_text(post, slack.posts)
            for title in want:
                assert slack_escape(title) in body
            for title in titles - want:
                assert slack_escape(title) not in body
    assert len(smtp.received) == 3 and len(top_level(slack)) == 2

    # A second run over the same listing sends nothing.
    again = run_once(world["config"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(smtp.received) == 3 and len(top_level(slack)) == 2

    # The listing gains papers: only those are sent.
    today = str(world["today"])
    added = world["items"][45:60]
    world["served"][today] = world["served"][today] + added
    third = run_once(world["config"])
    assert third.returncode == 0, third.stdout + third.stderr
    new_mail = smtp.received[3:]
    for received in new_mail:
        name = next(n for n, s in SUBSCRIPTIONS.items() if received.rcpt_tos[0] in s[1])
        assert_titles(received.message, expected(added, name), titles)  # none of the earlier papers again
    expected_mail = sum(len(SUBSCRIPTIONS[n][1]) for n in SUBSCRIPTIONS if expected(added, n))
    assert len(new_mail) == expected_mail


def test_hostile_title_arrives_escaped_in_html_and_slack(world):
    result = run_once(world["config"])
    assert result.returncode == 0, result.stdout + result.stderr
    [message] = mail_for(world["smtp"], "alice@example.org")
    html = re.sub(r"</?mark\b[^>]*>", "", message.get_body(("html",)).get_content())
    assert "<script>" not in html
    assert "Fast &lt;script&gt;alert(1)&lt;/script&gt; LLM inference &amp; &lt;!channel&gt; decoding" in html
    assert HOSTILE_TITLE in message.get_body(("plain",)).get_content().replace("*", "")
    [post] = [p for p in top_level(world["slack"]) if p["channel"] == "#alice"]
    body = slack_text(post, world["slack"].posts)
    assert "&lt;script&gt;" in body and "&amp;" in body and "&lt;!channel&gt;" in body
    assert "<script>" not in body and "<!channel>" not in body


def test_a_failing_source_is_reported_and_exit_code_is_1(world):
    world["http"].route("/api/daily_papers", "<html>Bad gateway</html>", status=200)
    result = run_once(world["config"])
    assert result.returncode == 1
    assert "hf-daily" in result.stdout and "HTML" in result.stdout
    assert world["smtp"].received == []
