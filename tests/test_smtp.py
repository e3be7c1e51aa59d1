"""SmtpChannel against real aiosmtpd servers: one connection per batch, reconnects, TLS before AUTH,
reply codes mapped to retry / permanent, and header injection stopped before the wire."""
from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from email.headerregistry import Address
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from servers import SmtpServer, _SmtpHandler, raw_field

from digestbot.channels import Envelope
from digestbot.channels.email import SmtpChannel
from digestbot.errors import DeliveryError
from digestbot.models import Message

SENDER = Address(display_name="Paper Digest", addr_spec="digest@example.org")


def envelope(target: str, n: int = 1) -> Envelope:
    return Envelope(target=target, subscription="Sub", subscription_id="sub",
                    message_id=f"<digest-{n}.sub@example.org>", list_id="Sub <sub.example.org>")


MESSAGE = Message(subject="3 new papers for Sub", text="hello", html="<p>hello</p>")


class CountingHandler(_SmtpHandler):
    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list) -> list:
        self.owner.ehlos += 1
        session.host_name = hostname  # aiosmtpd leaves this to a handler that defines the hook
        return responses


class Server(SmtpServer):
    """SmtpServer that counts connections (EHLOs) and can speak TLS (implicit or STARTTLS)."""

    def __init__(self, credentials=None, tls: ssl.SSLContext | None = None, implicit: bool = False):
        super().__init__(credentials)
        self.tls, self.implicit, self.ehlos = tls, implicit, 0

    def start(self) -> Server:
        extra: dict[str, Any] = {}
        if self.credentials is not None:
            # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the whole session is encrypted
            tls_first = self.tls is not None and not self.implicit
            extra = {"authenticator": self._authenticate, "auth_require_tls": tls_first}
        if self.tls is not None:
            extra |= {"ssl_context": self.tls} if self.implicit else {"tls_context": self.tls,
                                                                       "require_starttls": True}
        self._controller = Controller(CountingHandler(self), hostname=self.host, port=self.port, **extra)
        self._controller.start()
        return self


@pytest.fixture
def tls(tmp_path, monkeypatch) -> ssl.SSLContext:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts it through the default context
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_a_batch_uses_one_connection_and_reconnects_after_the_server_restarts():
    with Server() as server:
        with SmtpChannel(server.host, server.port, "none", SENDER) as channel:
            for i in range(5):
                assert channel.send(MESSAGE, envelope(f"r{i}@example.org", i)) == f"<digest-{i}.sub@example.org>"
            assert server.ehlos == 1
            server.stop()
            server.start()  # the old connection is gone
            channel.send(MESSAGE, envelope("late@example.org", 9))
        assert server.ehlos == 2
        assert [r.rcpt_tos for r in server.received] == [[f"r{i}@example.org"] for i in range(5)] + [
            ["late@example.org"]]


def test_a_server_that_is_down_is_unreachable_not_permanent():
    server = Server()  # never started
    with pytest.raises(DeliveryError) as error, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        channel.send(MESSAGE, envelope("a@example.org"))
    assert error.value.unreachable and not error.value.permanent and "is it running" in str(error.value)


@pytest.mark.parametrize("reply, permanent", [("451 4.3.0 try later", False), ("554 5.7.1 rejected", True)])
def test_data_replies_map_to_retry_or_permanent(reply, permanent):
    with Server() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        server.fail_data = reply
        with pytest.raises(DeliveryError) as error:
            channel.send(MESSAGE, envelope("a@example.org"))
        assert error.value.permanent is permanent and reply in str(error.value)
        server.fail_data = None
        channel.send(MESSAGE, envelope("b@example.org"))  # the connection is still usable
        assert server.ehlos == 1 and len(server.received) == 1


def test_starttls_happens_before_auth(tls):
    with Server(credentials={"digest": "s3cret"}, tls=tls) as server:
        with SmtpChannel(server.host, server.port, "starttls", SENDER, "digest", "s3cret") as channel:
            channel.send(MESSAGE, envelope("a@example.org"))
        assert server.logins == ["digest"] and len(server.received) == 1  # the server refuses AUTH without TLS


def test_implicit_tls(tls):
    with Server(credentials={"digest": "s3cret"}, tls=tls, implicit=True) as server:
        with SmtpChannel(server.host, server.port, "ssl", SENDER, "digest", "s3cret") as channel:
            channel.send(MESSAGE, envelope("a@example.org"))
        assert server.logins == ["digest"] and len(server.received) == 1


def test_starttls_missing_never_falls_back_to_a_plain_login():
    with Server(credentials={"digest": "s3cret"}) as server:  # offers AUTH in the clear, no STARTTLS
        with pytest.raises(DeliveryError) as error, \
                SmtpChannel(server.host, server.port, "starttls", SENDER, "digest", "s3cret") as channel:
            channel.send(MESSAGE, envelope("a@example.org"))
        assert "STARTTLS" in str(error.value) and server.logins == [] and server.received == []


def test_crlf_in_a_header_value_is_refused_before_connecting():
    with Server() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        hostile = Message(subject="Papers\r\nBcc: victim@evil.example", text="x")
        with pytest.raises(DeliveryError) as error:
            channel.send(hostile, envelope("a@example.org"))
        assert error.value.permanent and server.ehlos == 0 and server.received == []


def test_each_recipient_gets_its_own_message_with_its_own_headers():
    targets = ["a@example.org", "Ann Example <ann@example.org>", "b@example.org", "c@example.org"]
    with Server() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        for n, target in enumerate(targets):
            channel.send(MESSAGE, envelope(target, n))
    assert [str(m["To"]) for m in server.messages] == targets
    assert [m["Message-ID"] for m in server.messages] == [f"<digest-{n}.sub@example.org>" for n in range(4)]
    assert all(len(m.get_all("To")) == 1 and m["Date"] for m in server.messages)
    assert len({m.get_body(("html",)).get_content() for m in server.messages}) == 1


def test_a_record_is_held_back_to_the_next_mail_command_and_its_failure_stops_that_message():
    """The send pass hands each accepted message's ledger write to `record`. SMTP runs it while its
    next MAIL command is with the server: before that message can be accepted. If it fails, that
    message is not handed over (one unrecorded at most); `close` runs a record still held back."""
    order: list[tuple[str, int]] = []

    def recorded(name: str):
        return lambda: order.append((name, len(server.received)))

    def broken() -> None:
        raise RuntimeError("commit failed")

    with Server() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        channel.send(MESSAGE, envelope("a@example.org", 1))
        channel.record(recorded("a"))
        assert order == []  # held back: it overlaps the next exchange
        channel.send(MESSAGE, envelope("b@example.org", 2))
        assert order == [("a", 1)]  # written before b arrived
        channel.record(broken)
        with pytest.raises(RuntimeError):
            channel.send(MESSAGE, envelope("c@example.org", 3))
        channel.send(MESSAGE, envelope("d@example.org", 4))  # the session is still usable
        channel.record(recorded("d"))
    assert order == [("a", 1), ("d", 3)]  # close wrote the last one
    assert server.rcpts == [["a@example.org"], ["b@example.org"], ["d@example.org"]]


def test_a_held_back_record_is_written_when_the_next_send_fails_before_mail():
    """A server that went away: the next send fails before its MAIL command, and the record of the
    message before it is written all the same (the send pass then records the failure)."""
    written: list[str] = []
    with Server() as server:
        channel = SmtpChannel(server.host, server.port, "none", SENDER)
        channel.send(MESSAGE, envelope("a@example.org", 1))
        channel.record(lambda: written.append("a"))
    with pytest.raises(DeliveryError) as error:
        channel.send(MESSAGE, envelope("b@example.org", 2))
    assert error.value.unreachable and written == ["a"]
    channel.close()


def test_lines_starting_with_a_dot_arrive_intact():
    """The shared part is dot-stuffed once and reused: a line "." must not end the message early and
    ".hidden" must not lose its dot, for every recipient (the server removes the stuffing)."""
    text = "first line\n.\n.hidden\n..two dots\nlast line\n"
    message = Message(subject="dots", text=text, html="<p>\n.\n.dot</p>")
    with Server() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        for n, target in enumerate(["a@example.org", "b@example.org"]):
            channel.send(message, envelope(target, n))
    assert len(server.messages) == 2
    for received in server.messages:
        assert received.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
        assert received.get_body(("html",)).get_content().replace("\r\n", "\n") == "<p>\n.\n.dot</p>\n"


LONG_URL = "https://digest.example.org/unsubscribe?list=sub&target=ann%40example.org&token=x" + "a1b2" * 30
MAILTO = "mailto:digest@example.org?subject=unsubscribe%20sub"


@pytest.mark.parametrize("target", ["ann@example.org", "Jörg <joerg@exämple.org>"])  # fast path; build_email
def test_a_long_list_unsubscribe_arrives_folded_between_its_urls_never_encoded(target):
    """RFC 2369: a client looks for <URL> in the raw field, so the field is folded, never RFC 2047-encoded."""
    assert len(LONG_URL) == 200
    with SmtpServer() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        channel.send(MESSAGE, Envelope(target, "Sub", "sub", "<digest-1.sub@example.org>", "Sub <sub.example.org>",
                                       (LONG_URL, MAILTO)))
    [received] = server.received
    field = raw_field(received.raw, "List-Unsubscribe")
    assert field == [f"List-Unsubscribe: <{LONG_URL}>,".encode(), f" <{MAILTO}>".encode()]  # folded at the comma
    assert b"=?" not in b"".join(field) and all(len(line) <= 998 for line in field)
    assert b"".join(field).split(b": ", 1)[1].decode() == f"<{LONG_URL}>, <{MAILTO}>"  # unfolded
    value = received.message["List-Unsubscribe"]
    assert value == f"<{LONG_URL}>, <{MAILTO}>" and re.findall(r"<([^>]*)>", value) == [LONG_URL, MAILTO]
    assert raw_field(received.raw, "List-Unsubscribe-Post") == [b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"]


@pytest.mark.parametrize("url, reason", [
    ("https://digest.example.org/unsubscribe?t=" + "x" * 1000, "998 octets"),
    ("https://digest.example.org/désabonner", "printable ASCII"),
    ("https://digest.example.org/un subscribe", "printable ASCII"),
    ("https://digest.example.org/a>b", "angle brackets"),
], ids=["too-long", "non-ascii", "space", "angle-bracket"])
@pytest.mark.parametrize("target", ["ann@example.org", "Jörg <joerg@exämple.org>"])
def test_an_unsubscribe_url_that_cannot_be_sent_as_it_is_is_refused_before_connecting(url, reason, target):
    with SmtpServer() as server, SmtpChannel(server.host, server.port, "none", SENDER) as channel:
        with pytest.raises(DeliveryError) as error:
            channel.send(MESSAGE, Envelope(target, "Sub", "sub", "<d@x>", "Sub <sub.x>", (url, MAILTO)))
    assert error.value.permanent and "List-Unsubscribe" in str(error.value) and reason in str(error.value)
    assert server.received == [] and channel._smtp is None  # nothing sent, not even a connection
