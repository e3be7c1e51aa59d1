"""`digestbot send-test TARGET` (issue 20, point 6): one small message through the configured channel, in a
real `digestbot` process, to a loopback SMTP server and a Slack-compatible server; it prints what the server
answered, exits 1 with the reason when the server refuses or is down, and records nothing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TOKEN_ENV = "SEND_TEST_SLACK_TOKEN"


def config(tmp_path: Path, smtp_port: int, slack_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[bot]
database = "sqlite:///state/bot.db"

[email]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "Paper Digest <digest@example.org>"

[slack]
token_env = "{TOKEN_ENV}"
base_url = "{slack_url}"
min_interval = 0

[[sources]]
name = "hf"
kind = "hf_daily"
""", encoding="utf-8")
    return path


def send_test(path: Path, *args: str, token: str = "xoxb-test") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "digestbot", "-c", str(path), "send-test", *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, TOKEN_ENV: token})


def test_an_email_goes_through_smtp_and_the_reply_is_printed(tmp_path, smtp_server, slack_server):
    path = config(tmp_path, smtp_server.port, slack_server.base_url)
    result = send_test(path, "alice@example.org")
    assert result.returncode == 0, result.stderr
    [message] = smtp_server.messages
    assert smtp_server.rcpts == [["alice@example.org"]] and message["Subject"] == "digestbot test message"
    body = message.get_body(("plain",)).get_content()
    assert "If you can read it, digests to alice@example.org will arrive too." in body
    assert "the server answered: 250 Message accepted for delivery" in result.stdout
    assert f"Message-ID: {message['Message-ID']}" in result.stdout
    assert not (tmp_path / "state").exists()  # nothing recorded, no database made

    smtp_server.fail_rcpt["bob@example.org"] = "550 5.1.1 no such user here"
    refused = send_test(path, "bob@example.org")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "send-test to bob@example.org FAILED" in refused.stderr and "550 5.1.1 no such user here" in refused.stderr

    smtp_server.stop()
    down = send_test(path, "--json", "alice@example.org")
    assert down.returncode == 1
    document = json.loads(down.stdout)
    assert document["ok"] is False and f"127.0.0.1:{smtp_server.port}" in document["error"]
    assert len(smtp_server.received) == 1


def test_a_slack_channel_gets_a_post_and_its_ts_is_printed(tmp_path, smtp_server, slack_server):
    path = config(tmp_path, smtp_server.port, slack_server.base_url)
    result = send_test(path, "#papers", "--json")
    assert result.returncode == 0, result.stderr
    [post] = slack_server.posts
    assert post["channel"] == "#papers" and "digestbot send-test" in post["text"]
    reply = f"ok: ts {post['ts']} in channel {post['channel_id']}"  # Slack answers with the channel's id
    assert json.loads(result.stdout) == {"target": "#papers", "ok": True, "channel": "slack", "kind": "slack",
                                         "id": post["ts"], "reply": reply}
    text = send_test(path, "#papers")
    assert f"sent to #papers via slack; the server answered: ok: ts {slack_server.posts[1]['ts']} in channel " \
           f"{post['channel_id']}" in text.stdout

    slack_server.missing_channels.add("#nowhere")
    missing = send_test(path, "#nowhere")
    assert missing.returncode == 1 and "channel_not_found" in missing.stderr
    bad_token = send_test(path, "#papers", token="xoxb-wrong")
    assert bad_token.returncode == 1 and "invalid_auth" in bad_token.stderr
    assert len(slack_server.posts) == 2


def test_a_target_that_is_neither_an_address_nor_a_channel_is_a_usage_error(tmp_path, smtp_server, slack_server):
    path = config(tmp_path, smtp_server.port, slack_server.base_url)
    result = send_test(path, "alice")
    assert result.returncode == 2 and "give an email address" in result.stderr
    assert smtp_server.received == [] and slack_server.posts == []
