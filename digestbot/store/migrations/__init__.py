"""The schema's history as Alembic revisions (env.py, versions/), run by upkeep.py, never by hand.

Revision 0001 is the schema of the last release made before migrations (commit 1694ff9); every later
change of tables.py is a new file in versions/ whose `down_revision` is the previous head, and its id
is appended to REVISIONS below (tests/test_migrations.py checks both agree, and that upgrading to head
gives exactly the tables of tables.py). To draft one from the models:

    from alembic import command; from alembic.config import Config
    cfg = Config(); cfg.set_main_option("script_location", "digestbot.store:migrations")
    cfg.set_main_option("sqlalchemy.url", "sqlite:///a-copy-at-head.db")
    command.revision(cfg, "what changed", autogenerate=True)

REVISIONS is here so that opening a database at head (every command) reads one row and imports no
Alembic.
"""
from __future__ import annotations

REVISIONS = {  # oldest first: id -> what it holds
    "0001": "the schema of release 1694ff9",
    "0002": "digest.claimed_by and the installation table",
    "0003": "the suppression table (readers who left by a one-click link)",
    "0004": "the vote table (readers' 'more like this' / 'not for me' on papers)",
    "0005": "the heartbeat table (running daemons: host, pid, started_at, beat_at)",
    "0006": "the confirmation table (subscribe requests waiting for their reader's click)",
    "0007": "alerts: source_state.failures, the source_news, alert and alert_message tables",
    "0008": "the embedding table (papers' sentence embeddings, for relevance learned over them)",
    "0009": "no separate index on delivery.subscription (the unique constraint's first column serves it)",
}
HEAD = list(REVISIONS)[-1]
