"""A send pass renders each distinct digest once and shares it; sharing must never leak one
recipient's data to another. With readers' links on (bot.public_url and the [web] secret), each email is
its recipient's own (their vote, manage and unsubscribe links), rendered for them.
Real pipeline, real SQLite ledger, real aiosmtpd server."""
from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from urllib.parse import quote

import pytest
from servers import SmtpServer

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.channels import Envelope
from digestbot.channels.email import build_email
from digestbot.channels.email_wire import header_line, recipient_headers, shared_part
from digestbot.models import Match, Message, Paper
from digestbot.render import Renderer
from digestbot.store import Store
from digestbot.store.ledger import Ledger
from digestbot.web.tokens import verify

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
EARLY = ["ann@example.org", "Bob Example <bob@example.org>"]  # subscribed when every paper came
LATE = "carol@example.org"  # added later: only the last two papers are hers
OTHER = "olga@example.org"  # another subscription


class CountingRenderer(Renderer):
    def __init__(self) -> None:
        super().__init__()
        self.renders = 0

    def render(self, digest, **formats):
        self.renders += 1
        return super().render(digest, **formats)


def config(tmp_path, port: int, *, public: bool) -> config_module.Config:
    path = tmp_path / "config.toml"
    public_url = 'public_url = "https://digest.example.org"' if public else ""
    path.write_text(f"""
[bot]
database = "sqlite:///{tmp_path}/state.db"
{public_url}

[web]
secret_env = "DIGESTBOT_TEST_LINK_SECRET"

[email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Paper Digest <digest@example.org>"

[[subscriptions]]
name = "LLM inference"
query = "inference"
email = {[*EARLY, LATE]!r}
schedule = "instant"

[[subscriptions]]
name = "Other"
query = "inference"
email = ["{OTHER}"]
schedule = "instant"
""".replace("'", '"'))
    return config_module.load(path)


def seed(ctx: pipeline.Context) -> list[str]:
    """Five papers for the first subscription (its last recipient gets only the last two), one for the other."""
    titles = [f"Paper {i} on fast inference" for i in range(6)]
    papers = [Paper(title=t, arxiv_id=f"2411.{i:05d}", abstract="Inference.") for i, t in enumerate(titles)]
    first, other = (s.id for s in ctx.config.subscriptions)
    with ctx.store.write() as w:
        ids = w.record_papers("test", papers, NOW)
        early = [("email", a) for a in EARLY]
        w.record_matches([(pid, Match(first, p, 1.0)) for pid, p in ids[:3]], {first: early}, NOW)
        w.record_matches([(pid, Match(first, p, 1.0)) for pid, p in ids[3:5]],
                         {first: early + [("email", LATE)]}, NOW)
        w.record_matches([(ids[5][0], Match(other, ids[5][1], 1.0))], {other: [("email", OTHER)]}, NOW)
    return titles


def send(tmp_path, monkeypatch, *, public: bool):
    monkeypatch.setenv("DIGESTBOT_TEST_LINK_SECRET", "test-secret")
    with SmtpServer() as server:
        cfg = config(tmp_path, server.port, public=public)
        Store(cfg.database_url).create_tables()
        ctx = App.from_config(cfg)
        ctx.renderer = CountingRenderer()
        titles = seed(ctx)
        result = pipeline.send_due(ctx, NOW)
    by_rcpt = {r.rcpt_tos[0]: r for r in server.received}
    rows = {row.target: row for row in Ledger(ctx.store).digests("sent")}
    return result, by_rcpt, rows, titles, ctx.renderer.renders


@pytest.fixture
def sent(tmp_path, monkeypatch):
    """No public_url: no personal links, the body is shared (the secret is set, but unused in bodies)."""
    return send(tmp_path, monkeypatch, public=False)


@pytest.fixture
def sent_personal(tmp_path, monkeypatch):
    return send(tmp_path, monkeypatch, public=True)


def body(received) -> tuple[str, str]:
    mail = received.message
    return mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()


def test_recipients_of_one_subscription_share_one_render_and_get_the_same_papers(sent):
    result, by_rcpt, rows, titles, renders = sent
    assert len(result.sent) == 4 and sorted(by_rcpt) == ["ann@example.org", "bob@example.org", LATE, OTHER]
    assert renders == 3  # ann+bob share one; carol's papers differ; the other subscription has its own
    ann, bob = body(by_rcpt["ann@example.org"]), body(by_rcpt["bob@example.org"])
    assert ann == bob and all(t in ann[0] and t in ann[1] for t in titles[:5])
    assert "token=" not in "".join(ann) and "data-vote" not in ann[1]  # no personal links without public_url
    carol = body(by_rcpt[LATE])
    assert all(t in carol[0] for t in titles[3:5]) and not any(t in carol[0] for t in titles[:3])
    assert titles[5] in body(by_rcpt[OTHER])[0] and titles[0] not in body(by_rcpt[OTHER])[0]


def test_with_readers_links_each_email_recipient_gets_their_own_render_with_the_same_papers(sent_personal):
    result, by_rcpt, rows, titles, renders = sent_personal
    assert len(result.sent) == 4 and renders == 4  # one per recipient: the links in the body are theirs
    ann, bob = body(by_rcpt["ann@example.org"]), body(by_rcpt["bob@example.org"])
    assert ann != bob and all(t in bob[0] and t in bob[1] for t in titles[:5])
    strip = re.compile(r"token=[\w.-]+")
    assert strip.sub("", ann[0]) == strip.sub("", bob[0]) and strip.sub("", ann[1]) == strip.sub("", bob[1])


def test_each_recipient_gets_only_their_own_headers_and_links(sent_personal):
    _, by_rcpt, rows, _, _ = sent_personal
    targets = {"ann@example.org": EARLY[0], "bob@example.org": EARLY[1], LATE: LATE, OTHER: OTHER}
    for rcpt, received in by_rcpt.items():
        mail, row = received.message, rows[targets[rcpt]]
        assert str(mail["To"]) == targets[rcpt] and len(mail.get_all("To")) == 1
        assert mail["Message-ID"] == row.message_id and mail["Message-ID"].startswith(f"<digest-{row.id}.")
        [token] = re.findall(r"token=([\w.-]+)", "".join(str(mail["List-Unsubscribe"]).split()))
        assert verify(b"test-secret", token, "unsubscribe").target == targets[rcpt]  # signed for them alone
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        raw = received.raw.decode("ascii")
        for other in set(by_rcpt) - {rcpt}:  # nowhere in the message, headers or body, encoded or not
            assert other not in raw and quote(other) not in raw
        text, html = body(received)
        footer = re.search(r"Unsubscribe: \S+token=([\w.-]+)", text)
        assert footer and footer.group(1) == token  # the footer's link is the List-Unsubscribe one
        for found in re.findall(r"token=([\w.-]+)", text + html):  # every link in the body is theirs
            purpose = "vote" if f"vote?token={found}" in text else "manage" if f"manage?token={found}" in text \
                else "unsubscribe"
            assert verify(b"test-secret", found, purpose).target == targets[rcpt]
        assert re.search(r'data-vote="down" data-paper="2411\.0000\d"', html)
    assert len({m.message["Message-ID"] for m in by_rcpt.values()}) == 4


def envelope(target: str, unsubscribe: tuple[str, ...]) -> Envelope:
    return Envelope(target, "Sub", "sub", "<digest-7.sub@example.org>", "Sübscription <sub.example.org>", unsubscribe)


LONG = (f"https://digest.example.org/unsubscribe?list=sub&target={'x' * 60}%40example.org",
        "mailto:digest@example.org?subject=unsubscribe%20sub")


@pytest.mark.parametrize("target, unsubscribe", [
    ("ann@example.org", LONG[1:]),
    ("Jörg Müller <joerg@example.org>", LONG),
    ('"Smith, J. (\\"Jay\\")" <jay@example.org>', LONG[:1]),
    ("=?utf-8?q?not_an_encoded_word?= <w@example.org>", ()),
])
def test_the_fast_email_reads_back_like_build_email(target, unsubscribe):
    sender = Address(display_name="Paper Digest", addr_spec="digest@example.org")
    message = Message(subject="Über 5 new papers — " + "long " * 20, text="héllo\n" * 3, html="<p>héllo</p>")
    env = envelope(target, unsubscribe)
    fast = recipient_headers(env, "Sun, 22 Nov 2026 09:00:00 +0000") + shared_part(message, env.list_id, sender)
    mail = message_from_bytes(fast, policy=policy.default)
    slow = message_from_bytes(build_email(message, env, sender).as_bytes(policy=policy.SMTP), policy=policy.default)
    for name in ("From", "To", "Subject", "Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
                 "Auto-Submitted"):
        assert mail[name] == slow[name], name
    # 78 characters a line, but for a URL longer than that: it is never folded inside (RFC 2369)
    assert all(len(line) <= 78 or (b"<https://" in line and len(line) <= 998)
               for line in fast.split(b"\r\n\r\n")[0].split(b"\r\n"))
    assert mail.get_body(("plain",)).get_content() == slow.get_body(("plain",)).get_content()
    assert mail.get_body(("html",)).get_content() == slow.get_body(("html",)).get_content()


@pytest.mark.parametrize("value", ["a@example.org\r\nBcc: x@evil.example", "<id@x>\nBcc: y", "a\x00b", "x\rY"])
def test_control_characters_never_reach_a_header(value):
    with pytest.raises(ValueError):
        header_line("Message-ID", value)
    with pytest.raises(ValueError):
        recipient_headers(Envelope("a@example.org", "s", "s", value, "s <s.x>"), "Sun, 22 Nov 2026 09:00:00 +0000")
