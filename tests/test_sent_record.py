"""A busy or full database at the `sent` write (issue 16, point 4).

The server has the message by then: the record keeps trying for a while, and if it gives up, the
error says what is true (accepted, not recorded, may arrive twice). The write-ahead log is truncated
when a pass ends. Real SMTP server on loopback, real SQLite files, another connection holding the
write lock as another process would.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from delivery_world import HookedSmtpServer, hold_write_lock, init, make_world
from test_send_lease import _config, _seed_papers

from digestbot import pipeline
from digestbot.app import App
from digestbot.errors import StoreError
from digestbot.store import WAL_LIMIT, Store, utcnow
from digestbot.store.ledger import Ledger


def received_by(smtp) -> Counter:
    return Counter(r for received in smtp.received for r in received.rcpt_tos)


def test_a_lock_held_past_the_busy_timeout_at_the_sent_record_is_waited_out(tmp_path, http_server):
    """busy_timeout = 1 s; another process holds the write lock for 3 s from the moment the server
    accepted the first message. Today the record fails after 1 s ("nothing was changed") and the
    digest is left unrecorded, to be sent again."""
    recipients = ["a@example.org", "b@example.org"]
    holders = []
    with HookedSmtpServer() as smtp:
        world = make_world(tmp_path, http_server, smtp_port=smtp.port, emails=recipients, busy_timeout=1)
        init(world)
        smtp.after_accept = lambda n: holders.append(hold_write_lock(world.db, 3.0)) if n == 1 else None
        first = world.run("run", "--once")
        for holder in holders:
            holder.join()
        assert holders and first.returncode == 0, first.stdout + first.stderr
        assert [r["status"] for r in world.rows()] == ["sent", "sent"]
        again = world.run("run", "--once")
        assert again.returncode == 0, again.stdout + again.stderr
    assert received_by(smtp) == Counter(recipients)  # nobody got one twice


def test_a_sent_record_that_cannot_be_made_stops_the_pass_and_says_what_is_true(tmp_path):
    """The lock outlasts the whole retry budget (six busy timeouts: 1.8 s here)."""
    recipients = ["a@example.org", "b@example.org", "c@example.org"]
    holders = []
    with HookedSmtpServer() as smtp:
        config = _config(tmp_path, smtp.port, recipients, lease=600, busy_timeout=0.3)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)
        db = tmp_path / "state.db"
        smtp.after_accept = lambda n: holders.append(hold_write_lock(db, 8.0)) if n == 1 else None
        with pytest.raises(StoreError) as caught:
            pipeline.send_due(ctx, utcnow())
        for holder in holders:
            holder.join()
    [first] = smtp.received
    message = str(caught.value)
    assert f"accepted digest 1 for {first.rcpt_tos[0]} (Message-ID {first.message['Message-ID']})" in message
    assert "may arrive twice (with the same Message-ID)" in message and "database busy" in message
    assert "Free disk space, or stop the process holding the database" in message
    assert "nothing was changed" not in message
    assert len(smtp.received) == 1  # the pass stopped: nothing more was handed over
    [unrecorded] = [row for row in Ledger(ctx.store).digests("sending") if row.target == first.rcpt_tos[0]]
    assert unrecorded.message_id is None  # so the next run sends it again, as the message says


def test_the_write_ahead_log_is_truncated_when_a_pass_ends(tmp_path):
    recipients = [f"w{i}@example.org" for i in range(20)]
    with HookedSmtpServer() as smtp:
        config = _config(tmp_path, smtp.port, recipients, lease=600)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)
        wal = tmp_path / "state.db-wal"
        assert wal.exists() and wal.stat().st_size > 0  # the seed's commits are in it
        ctx.store.wal_limit = 0  # as if the log had grown past WAL_LIMIT (~40 MB)
        result = pipeline.send_due(ctx, utcnow())
    assert len(result.sent) == len(recipients)
    assert wal.stat().st_size == 0  # the store is still open: the log was truncated, not removed


def test_a_small_write_ahead_log_is_left_to_sqlites_own_checkpoints(tmp_path):
    recipients = [f"w{i}@example.org" for i in range(5)]
    with HookedSmtpServer() as smtp:
        config = _config(tmp_path, smtp.port, recipients, lease=600)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)
        pipeline.send_due(ctx, utcnow())
    assert 0 < (tmp_path / "state.db-wal").stat().st_size <= WAL_LIMIT  # no ~50 ms checkpoint every pass


def test_the_write_ahead_log_shrinks_back_after_sqlites_own_checkpoints(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'x.db'}") as store, store.read() as session:
        limit = session.connection().exec_driver_sql("PRAGMA journal_size_limit").scalar()
    assert limit == WAL_LIMIT


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB file system (tmpfs), so that "disk full" is the kernel's ENOSPC, not a simulation."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to its last byte; the filler file, to delete to make room again."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (65536, 512, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    return filler


def test_a_full_disk_at_the_sent_record_is_waited_out_and_nothing_arrives_twice(small_disk):
    """The disk fills up the moment the server accepts the first message, and has room again 3 s later:
    today the record fails at once and the digest is sent again by the next run."""
    import threading
    import time

    recipients = ["a@example.org", "b@example.org"]
    with HookedSmtpServer() as smtp:
        config = _config(small_disk, smtp.port, recipients, lease=600)
        Store(config.database_url).create_tables()
        ctx = App.from_config(config)
        _seed_papers(ctx)

        def full_for_a_while(n: int) -> None:
            if n == 1:
                filler = fill(small_disk)
                threading.Thread(target=lambda: (time.sleep(3), filler.unlink())).start()

        smtp.after_accept = full_for_a_while
        first = pipeline.send_due(ctx, utcnow())
        again = pipeline.send_due(ctx, utcnow())
        ctx.store.close()
    assert len(first.sent) == 2 and again.sent == [] and again.failed == []
    assert received_by(smtp) == Counter(recipients)  # nobody got one twice
