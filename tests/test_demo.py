"""`digestbot demo` leaves a playground that keeps working (issue 20, point 10): its config reads the bundled
listings from files (`text` sources), so `run --once`, `status` and `subs` work on it afterwards, offline;
running the demo again refuses to wipe a playground whose config was edited unless `--reset`; and digests
written to the outbox are reported as written, never as sent. Real `digestbot` processes throughout."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

from digestbot.relevance import embed


def digestbot(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    # No proxy and no network needed: a source that tried the network would fail in the report below.
    return subprocess.run([sys.executable, "-m", "digestbot", *argv], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "DIGESTBOT_CONFIG": ""})


def test_the_playground_keeps_working_after_the_demo(tmp_path):
    demo = digestbot("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    folder = tmp_path / "digestbot-demo"
    assert "\nsent " not in demo.stdout and "wrote 'Alice: LLM inference'" in demo.stdout
    assert "digests written (not sent" in demo.stdout
    config = (folder / "config.toml").read_text(encoding="utf-8")
    assert "url" not in config and "127.0.0.1" not in config  # nothing that dies with the demo's process
    assert sorted(p.name for p in (folder / "listings").iterdir()) == [
        "listing-machine-inference.txt", "listing-privacy-inference.txt", "listing-reasoning-inference.txt"]
    written = sorted(p.suffix for p in (folder / "outbox").iterdir())
    # The first listings' digests, then (Alice voted on hers) the last listing's for Alice and Top papers
    assert written.count(".eml") == 5 and written.count(".json") == 1
    assert "Alice marks 8 papers of her digest \"more like this\"" in demo.stdout
    assert "Alice's votes ranked her new digest" in demo.stdout and "that you marked not for me" in demo.stdout
    with sqlite3.connect(folder / "demo.db") as db:  # her votes, recorded as `digestbot feedback` records them
        assert db.execute("SELECT count(*) FROM vote WHERE subscription = 'alice-llm-inference'").fetchone() == (13,)
    if embed.available():  # the semantic extra (the test command installs it): exercised on the same papers
        found = re.search(r"With the semantic extra installed: (\d+) papers embedded once", demo.stdout)
        assert found, demo.stdout
        with sqlite3.connect(folder / "demo.db") as db:  # each paper once, kept
            assert db.execute("SELECT count(*), count(DISTINCT paper) FROM embedding").fetchone() == (
                int(found.group(1)),) * 2
    alice = [message_from_bytes(p.read_bytes(), policy=policy.default).get_body(("plain",)).get_content()
             for p in sorted((folder / "outbox").glob("*alice*.eml"))]
    assert len(alice) == 2 and "that you marked" not in alice[0]
    assert "that you marked more like this" in alice[1]  # a paper her query missed, chosen by her votes

    again = digestbot("-c", str(folder / "config.toml"), "run", "--once", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [(s["error"], s["new"]) for s in report["sources"]] == [(None, 0)] * 3
    assert all(s["listed"] > 0 for s in report["sources"])
    status = digestbot("-c", str(folder / "config.toml"), "status", "--json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["healthy"] is True

    # A new paper in a listing is found by the next run, like a real source's.
    listing = folder / "listings" / "listing-machine-inference.txt"
    listing.write_text(listing.read_text(encoding="utf-8") + "\n\nSpeculative Decoding for the Playground\n\n"
                       + "We show that a playground keeps working after the demo. " * 6 + "\n", encoding="utf-8")
    added = digestbot("-c", str(folder / "config.toml"), "run", "--once", cwd=tmp_path)
    assert added.returncode == 0 and "machine-inference: 92 papers listed, 1 new" in added.stdout, added.stdout
    assert "wrote 'Top papers': 1 papers for bob@example.org to the outbox" in added.stdout


def test_an_edited_playground_is_kept_unless_reset(tmp_path):
    assert digestbot("demo", "--dir", "play", cwd=tmp_path).returncode == 0
    folder = tmp_path / "play"
    subs = digestbot("-c", str(folder / "config.toml"), "subs", "add", "carol", "--query", "speculative decoding",
                     "--email", "carol@example.org", cwd=tmp_path)
    assert subs.returncode == 0, subs.stderr
    edited = (folder / "config.toml").read_text(encoding="utf-8")
    with sqlite3.connect(folder / "demo.db") as conn:
        papers = conn.execute("SELECT count(*) FROM paper").fetchone()[0]

    refused = digestbot("demo", "--dir", "play", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "is not the config the demo writes" in refused.stderr and "digestbot demo --reset" in refused.stderr
    assert (folder / "config.toml").read_text(encoding="utf-8") == edited  # nothing wiped
    with sqlite3.connect(folder / "demo.db") as conn:
        assert conn.execute("SELECT count(*) FROM paper").fetchone()[0] == papers
    assert any((folder / "outbox").iterdir())

    reset = digestbot("demo", "--dir", "play", "--reset", cwd=tmp_path)
    assert reset.returncode == 0, reset.stderr
    assert "carol" not in (folder / "config.toml").read_text(encoding="utf-8")
    # An untouched playground is simply started over.
    assert digestbot("demo", "--dir", "play", cwd=tmp_path).returncode == 0
