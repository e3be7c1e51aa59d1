"""Channels are plugins: a registry by kind, each channel built from the config (secrets included), one
place mapping the ledger's channels to the kinds that carry them, and the send pass's record hook.
Every channel built here delivers to a real loopback server (aiosmtpd, SlackServer) or the outbox."""
from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from delivery_world import make_world
from servers import SlackServer, SmtpServer, raw_field

from digestbot import channels, pipeline
from digestbot import config as config_module
from digestbot.app import App
from digestbot.channels import ROUTES, Channel, Envelope
from digestbot.channels.email import SmtpChannel
from digestbot.channels.file import FileChannel
from digestbot.channels.slack import SlackChannel
from digestbot.channels.slack_webhook import SlackWebhookChannel
from digestbot.errors import ConfigError, DeliveryError, DigestbotError
from digestbot.models import Message, SlackPost
from digestbot.store import Store, utcnow

PACKAGE = Path(channels.__file__).resolve().parents[1]
MESSAGE = Message(subject="2 new papers", text="hello", html="<p>hello</p>", slack_posts=[SlackPost(
    "2 new papers", [{"type": "section", "text": {"type": "mrkdwn", "text": "hello"}}])])


def envelope(target: str) -> Envelope:
    return Envelope(target=target, subscription="Sub", subscription_id="sub", message_id="<digest-1.sub@example.org>",
                    list_id="Sub <sub.example.org>")


def load(tmp_path: Path, sections: str, sub: str = 'email = ["a@example.org"]') -> config_module.Config:
    path = tmp_path / "config.toml"
    path.write_text(f'[bot]\ndatabase = "sqlite:///bot.db"\noutbox = "out"\n\n{sections}\n\n'
                    f'[[subscriptions]]\nname = "Sub"\nquery = "inference"\n{sub}\nschedule = "instant"\n')
    return config_module.load(path)


def test_every_kind_is_registered_and_builds_itself_from_the_config():
    registry = channels.load_all()
    assert registry == {"smtp": SmtpChannel, "slack": SlackChannel, "slack_webhook": SlackWebhookChannel,
                        "file": FileChannel}
    for kind, cls in registry.items():
        assert "from_config" in cls.__dict__ and "send" in cls.__dict__, f"{kind} must build itself and send"
        assert cls.__doc__ and cls.from_config.__doc__, f"{kind} needs docstrings"


def test_each_ledger_channel_maps_to_a_registered_kind_and_the_outbox_without_its_section(tmp_path):
    config = load(tmp_path, "", 'email = ["a@example.org"]\nslack = ["#papers"]\nslack_webhook = "https://x/y"')
    [sub] = config.subscriptions
    assert {ledger for ledger, _ in pipeline.targets(sub)} == set(ROUTES)  # what digest rows can carry
    assert all(kind in channels.load_all() for kind, _ in ROUTES.values())
    bare = {ledger: channels.kind_for(config, ledger) for ledger in ROUTES}
    assert bare == {"email": "file", "slack": "file", "slack_webhook": "slack_webhook"}
    full = load(tmp_path, '[email]\nsender = "d@example.org"\n\n[slack]\ntoken_env = "T"')
    assert {ledger: channels.kind_for(full, ledger) for ledger in ROUTES} == {
        "email": "smtp", "slack": "slack", "slack_webhook": "slack_webhook"}


def test_an_unknown_ledger_channel_or_kind_is_a_clear_error(tmp_path):
    config = load(tmp_path, "")
    with pytest.raises(DigestbotError, match=r"channel 'fax' cannot be delivered: this version knows "
                                             r"email, slack, slack_webhook"):
        channels.build(config, "fax")
    with pytest.raises(DigestbotError, match=r"no channel kind 'pigeon' is registered \(known: file, slack, "
                                             r"slack_webhook, smtp\)"):
        channels.lookup("pigeon")


def test_a_kind_is_taken_once_except_by_a_subclass_of_its_channel(monkeypatch):
    monkeypatch.setattr(channels, "REGISTRY", dict(channels.load_all()))
    with pytest.raises(TypeError, match="channel kind 'slack' is already digestbot.channels.slack.SlackChannel"):
        type("Copied", (Channel,), {"kind": "slack"})
    wrapped = type("Wrapped", (SmtpChannel,), {"kind": "smtp"})
    assert channels.lookup("smtp") is wrapped


def test_smtp_is_built_from_email_with_the_password_from_its_variable(tmp_path, monkeypatch):
    with SmtpServer(credentials={"digest": "s3cret"}) as server:
        config = load(tmp_path, f'[email]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n'
                                f'username = "digest"\npassword_env = "TEST_SMTP_PASSWORD"\n'
                                f'sender = "Paper Digest <digest@example.org>"')
        monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
        with pytest.raises(ConfigError, match="email.password_env: environment variable TEST_SMTP_PASSWORD"):
            channels.build(config, "email")
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
        with channels.build(config, "email") as channel:
            assert isinstance(channel, SmtpChannel)
            channel.send(MESSAGE, envelope("a@example.org"))
    assert server.logins == ["digest"] and server.rcpts == [["a@example.org"]]
    assert str(server.messages[0]["From"]) == "Paper Digest <digest@example.org>"


def test_slack_is_built_from_slack_with_the_token_from_its_variable(tmp_path, monkeypatch, slack_server):
    config = load(tmp_path, f'[slack]\ntoken_env = "TEST_SLACK_TOKEN"\nbase_url = "{slack_server.base_url}"\n'
                            f'min_interval = 0', 'slack = ["#papers"]')
    monkeypatch.delenv("TEST_SLACK_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="slack.token_env: environment variable TEST_SLACK_TOKEN"):
        channels.build(config, "slack")
    monkeypatch.setenv("TEST_SLACK_TOKEN", "xoxb-test")
    channel = channels.build(config, "slack")
    assert isinstance(channel, SlackChannel) and channel.pacer.interval == 0
    ts = channel.send(MESSAGE, envelope("#papers"))
    assert [(p["channel"], p["ts"]) for p in slack_server.posts] == [("#papers", ts)]


def test_slack_webhook_is_built_from_each_subscriptions_url_or_its_variable(tmp_path, monkeypatch, slack_server):
    config = load(tmp_path, "", 'slack_webhook_env = "TEST_WEBHOOK"')
    monkeypatch.setenv("TEST_WEBHOOK", slack_server.webhook_url("T1/B1/secret"))
    channel = channels.build(config, "slack_webhook")
    assert isinstance(channel, SlackWebhookChannel)
    channel.send(MESSAGE, envelope("webhook"))
    assert [w["id"] for w in slack_server.webhooks] == ["T1/B1/secret"]


def test_without_email_or_slack_sections_digests_go_to_the_outbox(tmp_path):
    config = load(tmp_path, "")
    with channels.build(config, "email") as mail, channels.build(config, "slack") as slack:
        eml = Path(mail.send(MESSAGE, envelope("a@example.org")))
        payload = Path(slack.send(MESSAGE, envelope("#papers")))
    assert eml.parent == payload.parent == tmp_path / "out"
    assert message_from_bytes(eml.read_bytes(), policy=policy.default)["To"] == "a@example.org"
    assert json.loads(payload.read_text())[0]["channel"] == "#papers"


LONG_URL = "https://digest.example.org/unsubscribe?list=sub&target=ann%40example.org&token=x" + "a1b2" * 30
MAILTO = "mailto:digest@example.org?subject=unsubscribe%20sub"


def test_the_outbox_writes_a_long_list_unsubscribe_folded_between_its_urls_never_encoded(tmp_path):
    outbox = FileChannel(tmp_path / "out", "email")
    unsubscribe = (LONG_URL, MAILTO)
    eml = Path(outbox.send(MESSAGE, replace(envelope("a@example.org"), unsubscribe=unsubscribe)))
    raw = eml.read_bytes()
    field = raw_field(raw, "List-Unsubscribe")
    assert field == [f"List-Unsubscribe: <{LONG_URL}>,".encode(), f" <{MAILTO}>".encode()] and b"=?" not in raw
    mail = message_from_bytes(raw, policy=policy.default)
    assert mail["List-Unsubscribe"] == f"<{LONG_URL}>, <{MAILTO}>"
    assert re.findall(r"<([^>]*)>", mail["List-Unsubscribe"]) == list(unsubscribe)
    assert raw_field(raw, "List-Unsubscribe-Post") == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    too_long = replace(envelope("b@example.org"), unsubscribe=(LONG_URL * 6, MAILTO))
    with pytest.raises(DeliveryError) as error:
        outbox.send(MESSAGE, too_long)
    assert error.value.permanent and "998 octets" in str(error.value) and list(eml.parent.iterdir()) == [eml]


def test_the_package_has_no_test_only_hook():
    """Faults are injected by channels the tests install (tests/kill_after_send.py), not by code
    that ships."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "DIGESTBOT_FAULT" not in text and "SIGKILL" not in text, path


class RecordCheckingSlack(SlackServer):
    """At each post, notes how many emails the SMTP server holds that the ledger does not call sent."""

    def __init__(self, smtp: SmtpServer, db: Path) -> None:
        super().__init__()
        self.smtp, self.db = smtp, db
        self.unrecorded_at_post: list[list[str]] = []
        self.emails_at_post: list[int] = []

    def _post(self, params):
        with sqlite3.connect(self.db) as conn:
            sent = {m for (m,) in conn.execute("SELECT message_id FROM digest WHERE status = 'sent'")}
        self.unrecorded_at_post.append([m["Message-ID"] for m in self.smtp.messages if m["Message-ID"] not in sent])
        self.emails_at_post.append(len(self.smtp.received))
        return super()._post(params)


def test_no_channel_posts_while_another_holds_back_a_record(tmp_path, http_server, smtp_server):
    """SMTP holds each record back to its next exchange. Email and Slack digests now go through sender
    threads of their own (sending.py), each its own connection, so the promise is one unrecorded message
    per connection (README, "Reliability"): while Slack posts, the SMTP connection holds back at most its
    one record, never two."""
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org", "b@example.org"],
                       slack_url="-", slack=["#one", "#two"])
    with RecordCheckingSlack(smtp_server, world.db) as slack:
        world.config.write_text(world.config.read_text().replace('base_url = "-"', f'base_url = "{slack.base_url}"'))
        result = world.run("run", "--once")
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(slack.posts) == 2 and len(smtp_server.received) == 2
    # (Whether a post comes after an email is up to the two threads; tests/test_send_parallel.py's kill
    # test holds the same promise with a process killed mid-pass.)
    assert len(slack.unrecorded_at_post) == 2 and all(len(held) <= 1 for held in slack.unrecorded_at_post)
    assert {r["status"] for r in world.rows()} == {"sent"}


def test_a_pass_past_its_lease_claims_the_next_batch_only_after_the_last_record(tmp_path, smtp_server):
    """A pass whose `now` is past the lease (a retry pass run for a later time, as the delivery
    benchmark does) sees a claimed digest it has not recorded as due again. SMTP holds the last
    record of a batch back: it must be written before the next batch (100 digests) is claimed,
    or that digest is claimed and sent a second time."""
    from test_send_lease import _config, _seed_papers

    recipients = [f"r{i}@example.org" for i in range(101)]
    config = _config(tmp_path, smtp_server.port, recipients, lease=600)
    Store(config.database_url).create_tables()
    ctx = App.from_config(config)
    _seed_papers(ctx)
    result = pipeline.send_due(ctx, utcnow() + timedelta(hours=1))
    ctx.store.close()
    assert len(result.sent) == 101 and not result.failed
    assert Counter(r for received in smtp_server.received for r in received.rcpt_tos) == Counter(recipients)
