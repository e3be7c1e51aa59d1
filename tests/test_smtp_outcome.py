"""Where an SMTP exchange breaks decides what it means (issue 16, points 2 and 3), against a real
misbehaving server on loopback (smtp_faults.py):

- before the final "." of DATA nothing was handed over: one reconnect, then `retried later`;
- after it the server may have the message: one more try at most, then `failed` with "outcome
  unknown … may have arrived", never a stream of copies;
- a reply smtplib cannot read (over 8 KB, no code) is a broken connection, never the server's
  "permanent: check the address".
"""
from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from email.headerregistry import Address

import pytest
from delivery_world import World, init, make_world
from smtp_faults import FaultySmtpServer

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.channels import Envelope
from digestbot.channels.email import SmtpChannel
from digestbot.errors import DeliveryError
from digestbot.models import Message

SENDER = Address(display_name="Paper Digest", addr_spec="digest@example.org")
MESSAGE = Message(subject="3 new papers for Sub", text="hello\n.\n.dot", html="<p>hello</p>")
LOST = ["close", "hang", "long", "garbage"]  # every way the reply to the final "." can go missing
RECIPIENTS = ["a@example.org", "b@example.org"]


def envelope(target: str, n: int = 1) -> Envelope:
    return Envelope(target=target, subscription="Sub", subscription_id="sub",
                    message_id=f"<digest-{n}.sub@example.org>", list_id="Sub <sub.example.org>")


def channel(server: FaultySmtpServer, **options) -> SmtpChannel:
    return SmtpChannel(server.host, server.port, "none", SENDER, data_timeout=3.0, **options)


def received_by(server: FaultySmtpServer) -> Counter:
    return Counter(r for received in server.received for r in received.rcpt_tos)


def assert_unknown(error: DeliveryError) -> None:
    text = str(error)
    assert error.permanent and "unknown" in text and "may have arrived" in text, text
    assert "check the address" not in text and "retry --failed" in text and "<digest-1.sub@example.org>" in text


# --- the channel on its own ---------------------------------------------------------------

@pytest.mark.parametrize("action", LOST)
def test_a_reply_lost_after_the_final_dot_every_time_gives_two_copies_and_an_unknown_outcome(action):
    with FaultySmtpServer() as server, channel(server) as smtp:
        server.misbehave("dot", action)
        with pytest.raises(DeliveryError) as error:
            smtp.send(MESSAGE, envelope("a@example.org"))
        assert_unknown(error.value)
        assert action != "hang" or "no reply within 3 s" in str(error.value)
        assert len(server.received) == 2  # the first copy and the one more try, never a stream
        assert {m.message["Message-ID"] for m in server.received} == {"<digest-1.sub@example.org>"}


@pytest.mark.parametrize("action", LOST)
def test_one_lost_reply_after_the_final_dot_is_tried_once_more_with_one_warning(action, caplog):
    with FaultySmtpServer() as server, channel(server) as smtp:
        server.misbehave("dot", action, times=1)
        with caplog.at_level(logging.INFO, logger="digestbot.channels.email"):
            assert smtp.send(MESSAGE, envelope("a@example.org")) == "<digest-1.sub@example.org>"
            smtp.send(MESSAGE, envelope("b@example.org", 2))  # the new connection carries on
        assert received_by(server) == Counter({"a@example.org": 2, "b@example.org": 1})
        [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "may arrive twice" in warning.getMessage() and "<digest-1.sub@example.org>" in warning.getMessage()


@pytest.mark.parametrize("action", ["close", "hang", "long", "garbage"])
def test_a_fault_before_the_final_dot_is_a_connection_problem_retried_later(action):
    with FaultySmtpServer() as server, channel(server, timeout=3.0) as smtp:
        server.misbehave("rcpt", action)
        with pytest.raises(DeliveryError) as error:
            smtp.send(MESSAGE, envelope("a@example.org"))
        assert error.value.unreachable and not error.value.permanent, str(error.value)
        assert "answered" not in str(error.value) and "check the address" not in str(error.value)
        assert server.received == [] and server.connections == 2  # one reconnect, nothing handed over
        server.misbehave(None)
        smtp.send(MESSAGE, envelope("a@example.org"))
        assert received_by(server) == Counter(["a@example.org"])


@pytest.mark.parametrize("action", ["close", "long"])
def test_an_unreadable_or_lost_ehlo_reply_is_a_connection_problem(action):
    with FaultySmtpServer() as server, channel(server) as smtp:
        server.misbehave("ehlo", action)
        with pytest.raises(DeliveryError) as error:
            smtp.send(MESSAGE, envelope("a@example.org"))
        assert error.value.unreachable and not error.value.permanent, str(error.value)
        assert "check the address" not in str(error.value) and server.received == []


def test_a_fault_before_the_final_dot_once_is_sent_after_one_reconnect():
    with FaultySmtpServer() as server, channel(server) as smtp:
        server.misbehave("rcpt", "long", times=1)
        smtp.send(MESSAGE, envelope("a@example.org"))
        assert received_by(server) == Counter(["a@example.org"]) and server.connections == 2


def test_the_reply_to_the_final_dot_is_awaited_for_data_timeout_not_the_connection_timeout():
    """RFC 5321 4.5.3.2.6: a server may take minutes to check a message before it answers."""
    assert SmtpChannel("127.0.0.1", 25, "none", SENDER).data_timeout == 600.0
    with FaultySmtpServer(delay=5.0) as server:
        server.misbehave("dot", "slow", times=1)
        with SmtpChannel(server.host, server.port, "none", SENDER, timeout=2.0, data_timeout=120.0) as smtp:
            smtp.send(MESSAGE, envelope("a@example.org"))
            assert smtp._smtp is not None and smtp._smtp.sock.gettimeout() == 2.0  # restored after that read
            smtp.send(MESSAGE, envelope("b@example.org", 2))
        assert received_by(server) == Counter(RECIPIENTS) and server.connections == 1


def test_a_non_ascii_address_goes_through_the_same_transaction_with_smtputf8():
    target = "Jörg <joerg@exämple.org>"
    with FaultySmtpServer() as server, channel(server) as smtp:
        smtp.send(MESSAGE, envelope(target))
        [received] = server.received
        assert received.rcpt_tos == ["joerg@exämple.org"] and str(received.message["To"]) == target
        assert server.mail_commands[-1].endswith(" SMTPUTF8 BODY=8BITMIME")
        server.misbehave("dot", "close")  # and its lost reply is as unknown as any other
        with pytest.raises(DeliveryError) as error:
            smtp.send(MESSAGE, envelope(target))
        assert_unknown(error.value)
        assert len(server.received) == 3


def test_a_server_without_smtputf8_fails_that_address_alone():
    with FaultySmtpServer(smtputf8=False) as server, channel(server) as smtp:
        with pytest.raises(DeliveryError) as error:
            smtp.send(MESSAGE, envelope("joerg@exämple.org"))
        assert error.value.permanent and not error.value.unreachable and "SMTPUTF8" in str(error.value)
        smtp.send(MESSAGE, envelope("a@example.org", 2))  # the channel is not down for the others
        assert received_by(server) == Counter(["a@example.org"])


# --- the whole program: run --once, retry, run --once ----------------------------------------

def assert_at_most_two_copies_and_failed_unknown(world: World, server: FaultySmtpServer) -> None:
    assert set(received_by(server)) == set(RECIPIENTS)
    assert all(n <= 2 for n in received_by(server).values()), received_by(server)
    for row in world.rows():
        assert row["status"] == "failed", row
        assert "unknown" in row["last_error"] and "may have arrived" in row["last_error"], row["last_error"]
        assert "check the address" not in row["last_error"]


@pytest.mark.parametrize("action", ["close", "long"])
def test_cli_a_reply_always_lost_after_the_final_dot_never_streams_copies(tmp_path, http_server, action):
    with FaultySmtpServer() as server:
        server.misbehave("dot", action)
        world = make_world(tmp_path, http_server, smtp_port=server.port, emails=RECIPIENTS)
        init(world)
        first = world.run("run", "--once")
        assert first.returncode == 1 and "outcome unknown" in first.stdout + first.stderr
        assert world.cli("retry").returncode == 0
        assert world.run("run", "--once").returncode == 1
        assert_at_most_two_copies_and_failed_unknown(world, server)
        assert "may have arrived" in world.cli("status").stdout


def test_pipeline_a_server_that_never_answers_the_final_dot_never_streams_copies(tmp_path, http_server):
    """As above with a hang; the data timeout is made short through the channel factory (the
    config has no key for it)."""
    with FaultySmtpServer() as server:
        server.misbehave("dot", "hang")
        world = make_world(tmp_path, http_server, smtp_port=server.port, emails=RECIPIENTS)
        init(world)
        cfg = config_module.load(world.config)

        def run_once() -> pipeline.SendResult:
            ctx = App.from_config(cfg)
            ctx.open_channel = lambda kind: channel(server)
            try:
                return pipeline.run_once(ctx, datetime.now(UTC))[1]
            finally:
                ctx.store.close()

        assert run_once().failed
        assert world.cli("retry").returncode == 0
        run_once()
        assert_at_most_two_copies_and_failed_unknown(world, server)


def test_cli_a_fault_before_the_final_dot_is_retried_later_and_sent_once(tmp_path, http_server):
    with FaultySmtpServer() as server:
        server.misbehave("rcpt", "close")
        world = make_world(tmp_path, http_server, smtp_port=server.port, emails=RECIPIENTS)
        init(world)
        assert world.run("run", "--once").returncode == 1
        assert server.received == [] and {r["status"] for r in world.rows()} == {"pending"}
        server.misbehave(None)
        assert world.cli("retry").returncode == 0
        second = world.run("run", "--once")
        assert second.returncode == 0, second.stdout + second.stderr
        assert received_by(server) == Counter(RECIPIENTS)
        assert {r["status"] for r in world.rows()} == {"sent"}
