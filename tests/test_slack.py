"""Slack delivery with the real slack_sdk client against SlackServer: Retry-After, no blind re-posts,
pacing, permanent errors, incoming webhooks, and hostile paper text in every format."""
from __future__ import annotations

import logging
import time

import pytest
from delivery_world import SLACK_TOKEN_ENV, make_world

from digestbot.channels import Envelope
from digestbot.channels.slack import SlackChannel
from digestbot.channels.slack_webhook import SlackWebhookChannel
from digestbot.errors import DeliveryError
from digestbot.models import Digest, Hit, Match, Message, Paper, SlackPost
from digestbot.render import Renderer

MESSAGE = Message(subject="2 new papers", text="x", slack_posts=[SlackPost("2 new papers", [
    {"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}])])


def envelope(target: str = "#papers") -> Envelope:
    return Envelope(target=target, subscription="Sub", subscription_id="sub", message_id="<digest-1.sub@x>",
                    list_id="Sub <sub.x>")


def posts_tried(server) -> int:
    return sum(1 for r in server.requests if r.path in ("/api/chat.postMessage",) or r.path.startswith("/webhook/"))


def test_429_waits_for_retry_after_then_posts_once(slack_server):
    slack_server.rate_limit(1, retry_after=1)
    channel = SlackChannel("xoxb-test", slack_server.base_url, min_interval=0)
    started = time.monotonic()
    ts = channel.send(MESSAGE, envelope())
    assert time.monotonic() - started >= 1.0  # it waited as told (a lower bound, never flaky)
    assert [p["ts"] for p in slack_server.posts] == [ts] and posts_tried(slack_server) == 2


def test_a_dropped_connection_is_retried_once_with_a_warning(slack_server, caplog):
    slack_server.drop(1)  # the server read the post, then hung up: it may have landed
    channel = SlackChannel("xoxb-test", slack_server.base_url, min_interval=0)
    with caplog.at_level(logging.WARNING, "digestbot.channels.slack"):
        channel.send(MESSAGE, envelope())
    assert posts_tried(slack_server) == 2 and len(slack_server.posts) == 1
    assert "may have landed" in caplog.text


def test_two_dropped_connections_give_up_for_good_after_two_posts(slack_server):
    slack_server.drop(5)
    channel = SlackChannel("xoxb-test", slack_server.base_url, min_interval=0)
    with pytest.raises(DeliveryError) as error:
        channel.send(MESSAGE, envelope())
    assert error.value.permanent and "may be there" in str(error.value)
    assert posts_tried(slack_server) == 2  # never a third copy


def test_after_two_drops_the_ledger_does_not_post_again(tmp_path, http_server, smtp_server, slack_server,
                                                        monkeypatch):
    monkeypatch.setenv(SLACK_TOKEN_ENV, "xoxb-test")
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[],
                       slack_url=slack_server.base_url, slack=["#papers"])
    world.cli("init")
    slack_server.drop(2)
    assert world.cli("run", "--once").returncode == 1
    assert world.cli("retry").returncode == 0
    assert world.cli("run", "--once").returncode == 0
    assert posts_tried(slack_server) == 2
    [row] = world.rows()
    assert row["status"] == "failed"
    assert "may be there" in world.cli("status").stdout


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth"])
def test_permanent_slack_errors(slack_server, error):
    if error == "channel_not_found":
        slack_server.missing_channels.add("#gone")
        channel = SlackChannel("xoxb-test", slack_server.base_url, min_interval=0)
    else:
        channel = SlackChannel("xoxb-wrong", slack_server.base_url, min_interval=0)
    with pytest.raises(DeliveryError) as failure:
        channel.send(MESSAGE, envelope("#gone"))
    assert failure.value.permanent and error in str(failure.value) and posts_tried(slack_server) == 1


def test_posts_to_one_channel_are_paced(slack_server):
    channel = SlackChannel("xoxb-test", slack_server.base_url, min_interval=0.3)
    started = time.monotonic()
    for _ in range(3):
        channel.send(MESSAGE, envelope())
    assert time.monotonic() - started >= 0.6 and len(slack_server.posts) == 3


def test_incoming_webhook_posts_and_honours_retry_after(slack_server):
    url = slack_server.webhook_url("T1/B1/abc")
    slack_server.rate_limit(1, retry_after=1)
    channel = SlackWebhookChannel({"sub": url}, min_interval=0)
    started = time.monotonic()
    channel.send(MESSAGE, envelope("webhook"))
    assert time.monotonic() - started >= 1.0
    assert [w["id"] for w in slack_server.webhooks] == ["T1/B1/abc"]


def test_a_dead_webhook_is_permanent_and_a_dropped_one_posts_at_most_twice(slack_server):
    slack_server.dead_webhooks.add("T1/B1/dead")
    dead = SlackWebhookChannel({"sub": slack_server.webhook_url("T1/B1/dead")}, min_interval=0)
    with pytest.raises(DeliveryError) as error:
        dead.send(MESSAGE, envelope("webhook"))
    assert error.value.permanent and "no_service" in str(error.value)
    slack_server.drop(5)
    dropped = SlackWebhookChannel({"sub": slack_server.webhook_url("T1/B1/ok")}, min_interval=0)
    with pytest.raises(DeliveryError):
        dropped.send(MESSAGE, envelope("webhook"))
    assert posts_tried(slack_server) == 3  # one to the dead hook, two to the dropped one


def test_a_subscription_webhook_is_delivered_through_the_ledger(tmp_path, http_server, smtp_server, slack_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=[],
                       webhook=slack_server.webhook_url("T9/B9/hook"))
    world.cli("init")
    result = world.cli("run", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(slack_server.webhooks) == 1
    [row] = world.rows()
    assert (row["channel"], row["target"], row["status"]) == ("slack_webhook", "webhook", "sent")
    assert "hooks" not in world.cli("status").stdout and "T9/B9" not in result.stdout  # the URL is a secret


HOSTILE = "<script>alert(1)</script> <!channel> <http://evil.example|click me> & more"


def hostile_digest() -> Digest:
    paper = Paper(title=HOSTILE, abstract=f"We study {HOSTILE} inference.", authors=("<!here>",),
                  url="javascript:alert(1)", github="javascript:alert(2)", project_page="JaVaScRiPt:alert(3)")
    return Digest(subscription="Sub", subscription_id="sub", period="today",
                  matches=[Match("sub", paper, 1.0, (Hit("inference", "abstract"),))])


def test_hostile_paper_text_is_escaped_or_dropped_in_html_text_and_slack(slack_server):
    message = Renderer().render(hostile_digest())
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    for rendered in (message.html, message.text, str(message.slack_posts)):
        assert "javascript:" not in rendered.lower()  # links that are not http(s) are dropped
    SlackChannel("xoxb-test", slack_server.base_url, min_interval=0).send(message, envelope())
    [post] = slack_server.posts
    wire = str(post["text"]) + str(post["blocks"])
    for control in ("<!channel>", "<!here>", "<http://evil.example|click me>", "<script>"):
        assert control not in wire
    assert "&lt;!channel&gt;" in wire and "&lt;http://evil.example|click me&gt;" in wire
