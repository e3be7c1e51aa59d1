"""A first run SIGKILLed the instant its database file appears: the next run must simply work.

Older versions created the tables in the database file itself; killed in the first milliseconds they left
a file with no tables that every later command refused (a service restarted on failure looped for ever).
"""
from __future__ import annotations

import pytest
from delivery_world import make_world

ATTEMPTS = 4


@pytest.mark.parametrize("command", [("run", "--once", "--no-send"), ("init",)])
def test_a_first_run_killed_as_its_database_appears_never_wedges_the_installation(tmp_path, http_server,
                                                                                  smtp_server, command):
    for attempt in range(ATTEMPTS):
        (tmp_path / str(attempt)).mkdir()
        world = make_world(tmp_path / str(attempt), http_server, smtp_port=smtp_server.port,
                           emails=["a@example.org"])
        folder = world.db.parent
        process = world.start(*command)
        while process.poll() is None and not any(folder.iterdir()):
            pass  # watch as closely as Python can: kill at the first sign of the database
        process.kill()
        process.communicate(timeout=60)
        left = sorted(p.name for p in folder.iterdir())
        after = world.run("run", "--once")
        assert after.returncode == 0, f"attempt {attempt}, after a kill that left {left}: {after.stderr}"
        assert not [p for p in folder.iterdir() if ".creating-" in p.name]  # no leftover stays
    assert len(smtp_server.received) == ATTEMPTS  # each new installation sent its digest once


def test_two_first_runs_at_once_share_one_database(tmp_path, http_server, smtp_server):
    world = make_world(tmp_path, http_server, smtp_port=smtp_server.port, emails=["a@example.org"])
    both = [world.start("run", "--once"), world.start("run", "--once")]
    outputs = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert len(smtp_server.received) == 1  # one database, one ledger: the digest went once
    assert sorted(p.name for p in world.db.parent.iterdir() if ".creating-" in p.name) == []
