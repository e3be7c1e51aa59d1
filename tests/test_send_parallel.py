"""Sending over several SMTP connections at once (`[email] connections`, issue 21 point 5): every digest
exactly once, each connection leaving at most one accepted message unrecorded.

Real aiosmtpd on loopback (a relay that answers each DATA after a delay, so that connections overlap),
real SQLite files, the real CLI in a subprocess where a SIGKILL is the point.
"""
from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from delivery_world import HookedSmtpServer, init, make_world
from servers import free_port
from test_send_lease import _seed_papers

from digestbot import config as config_module
from digestbot import pipeline
from digestbot.app import App
from digestbot.errors import ConfigError
from digestbot.store import Store, utcnow
from digestbot.store.ledger import Ledger


def received_by(smtp: HookedSmtpServer) -> Counter:
    return Counter(r for received in smtp.received for r in received.rcpt_tos)


def _config(tmp_path: Path, port: int, recipients: list[str], *, connections: int,
            lease: float = 600) -> config_module.Config:
    path = tmp_path / "config.toml"
    emails = ", ".join(f'"{r}"' for r in recipients)
    path.write_text(f"""
[bot]
database = "sqlite:///{tmp_path}/state.db"
send_lease = {lease}

[email]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Paper Digest <digest@example.org>"
connections = {connections}

[[subscriptions]]
name = "everything"
query = "inference"
email = [{emails}]
schedule = "instant"
""")
    return config_module.load(path)


def _context(tmp_path: Path, port: int, recipients: list[str], **options: float) -> pipeline.Context:
    config = _config(tmp_path, port, recipients, **options)  # type: ignore[arg-type]
    Store(config.database_url).create_tables()
    ctx = App.from_config(config)
    _seed_papers(ctx)
    return ctx


def _statuses(ctx: pipeline.Context) -> Counter:
    ledger = Ledger(ctx.store)
    return Counter({status: len(ledger.digests(status)) for status in ("pending", "sending", "sent", "failed")})


def test_four_connections_send_at_once_and_each_digest_exactly_once(tmp_path):
    recipients = [f"p{i}@example.org" for i in range(24)]
    with HookedSmtpServer(delay=0.3) as smtp:
        ctx = _context(tmp_path, smtp.port, recipients, connections=4)
        started = time.perf_counter()
        result = pipeline.send_due(ctx, utcnow())
        took = time.perf_counter() - started
    assert smtp.most_at_once == 4  # four connections each had a message with the server at the same time
    assert received_by(smtp) == Counter(recipients)  # each recipient exactly once
    assert _statuses(ctx)["sent"] == len(recipients) and not result.failed and result.deferred == 0
    assert sorted(target for _, _, target, _ in result.sent) == sorted(recipients)
    assert took < len(recipients) * 0.3 * 0.75  # one connection alone needs 7.2 s (a generous bound: 5.4 s)


def test_a_550_for_one_recipient_fails_only_that_digest(tmp_path):
    recipients = [f"q{i}@example.org" for i in range(8)]
    with HookedSmtpServer(delay=0.05) as smtp:
        smtp.fail_rcpt["q3@example.org"] = "550 5.1.1 no such user"
        ctx = _context(tmp_path, smtp.port, recipients, connections=4)
        result = pipeline.send_due(ctx, utcnow())
    assert [target for _, target, _ in result.failed] == ["q3@example.org"]
    assert received_by(smtp) == Counter(r for r in recipients if r != "q3@example.org")
    [failed] = Ledger(ctx.store).digests("failed")
    assert failed.target == "q3@example.org" and "550" in (failed.last_error or "")
    assert _statuses(ctx)["sent"] == len(recipients) - 1


def test_smtp_down_defers_every_digest_and_loses_none(tmp_path):
    recipients = [f"d{i}@example.org" for i in range(10)]
    port = free_port()  # nothing listens there yet
    ctx = _context(tmp_path, port, recipients, connections=4)
    result = pipeline.send_due(ctx, utcnow())
    assert not result.sent and result.deferred + len(result.failed) == len(recipients)
    assert len(result.failed) <= 4  # at most each connection's first try; the rest were not attempted
    assert _statuses(ctx) == Counter(pending=len(recipients))  # none lost, none left `sending`
    smtp = HookedSmtpServer()
    smtp.port = port
    with smtp:
        later = pipeline.send_due(ctx, utcnow() + timedelta(hours=1))  # past every retry time
    assert received_by(smtp) == Counter(recipients) and len(later.sent) == len(recipients)


def test_a_pass_whose_now_is_past_the_lease_never_claims_its_own_digests_in_flight(tmp_path):
    """`now` an hour ahead: every claim of this pass is `sending` with a lease that ran out at `now`, so
    the claim query sees them as due; the pass must not take (and send) them a second time."""
    recipients = [f"l{i}@example.org" for i in range(12)]
    with HookedSmtpServer(delay=0.1) as smtp:
        ctx = _context(tmp_path, smtp.port, recipients, connections=2, lease=60)
        result = pipeline.send_due(ctx, utcnow() + timedelta(hours=1))
    assert received_by(smtp) == Counter(recipients)  # nobody twice
    assert len(result.sent) == len(recipients) and _statuses(ctx)["sent"] == len(recipients)


def test_connections_outside_1_to_32_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="connections must be between 1 and 32"):
        _config(tmp_path, 25, ["a@example.org"], connections=33)
    assert _config(tmp_path, 25, ["a@example.org"], connections=32).email.connections == 32  # type: ignore[union-attr]


def test_a_kill_mid_pass_leaves_at_most_one_unrecorded_message_per_connection(tmp_path, http_server):
    """SIGKILL of `run --once` sending over two connections to a slow relay: the messages the server has
    and the ledger does not are at most two (one per connection); the next run sends every other
    digest, each once."""
    recipients = [f"k{i}@example.org" for i in range(16)]
    with HookedSmtpServer(delay=0.3) as smtp:
        world = make_world(tmp_path, http_server, smtp_port=smtp.port, emails=recipients, send_lease=2)
        world.config.write_text(world.config.read_text().replace('security = "none"',
                                                                 'security = "none"\nconnections = 2'))
        init(world)
        first = world.start("run", "--once")
        smtp.wait_for(6)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        time.sleep(0.6)  # a message whose DATA went out before the kill is still being answered
        recorded = {row["target"] for row in world.rows() if row["status"] == "sent"}
        unrecorded = [r for r in received_by(smtp) if r not in recorded]
        assert first.returncode == -signal.SIGKILL and 6 <= len(smtp.received) < len(recipients)
        assert len(unrecorded) <= 2, unrecorded
        time.sleep(2.2)  # let the killed run's 2-second leases run out (a wait, not an assertion on time)
        again = world.run("run", "--once")
        assert again.returncode == 0, again.stdout + again.stderr
    counts = received_by(smtp)
    assert set(counts) == set(recipients)  # nothing lost
    assert {r for r, n in counts.items() if n > 1} <= set(unrecorded)  # a duplicate only where the kill left one
    assert [r["status"] for r in world.rows()] == ["sent"] * len(recipients)
