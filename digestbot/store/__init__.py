"""The store: papers, matches, the delivery ledger and the state of sources, in one SQL database.

What the rest of digestbot uses is imported here; it gets plain values (the dataclasses and status
enums of values.py, models.Paper and Match), never a table row, and no SQLAlchemy object but the
Session that `Store.read()` yields to tests. The modules:

    database.py    Store: opening a database, reading it, write transactions (`Store.write()`)
    writer.py      the operations of one write transaction (papers, matches, polls, new digests)
    alerting.py    alerts' reads and writes: sources' new-listing history, problems, messages queued in the ledger
    ledger.py      the send side of the ledger: claims, leases, sent/failed records (SQL in ledger_sql.py)
    values.py      the values handed out: DigestStatus, DeliveryStatus, DigestRecord, SourceRecord, Heartbeat,
                   ConfirmationStatus, ConfirmationRecord
    tables.py      the tables (SQLModel), and their rows turned into values
    identity.py    which stored paper a sighting is
    opening.py     an installation's database: created when new, refused when lost (dbstate.py)
    schema.py      making a new database whole at once; the installation id
    leader.py      the poll leader lock: one process at a time polls and opens digests (advisory lock, flock)
    upkeep.py      schema upgrades (migrations/, Alembic) and SQLite's write-ahead log

Only these modules import SQLAlchemy or SQLModel.
"""
from __future__ import annotations

from .alerting import AlertBook
from .database import WAL_LIMIT, Store, is_blank, set_aside, sqlite_path
from .leader import Leader, LeaderInfo
from .ledger import ChannelCounts, Ledger
from .ledger_sql import Claim
from .opening import Initialised, create_store, init_database, never_used, open_store
from .upkeep import Revision, Upgraded
from .values import (
    ALERTS,
    ANY_TARGET,
    VOTES,
    AlertMessage,
    AlertRecord,
    ConfirmationRecord,
    ConfirmationStatus,
    DeliveryStatus,
    DigestRecord,
    DigestStatus,
    Heartbeat,
    SourceRecord,
    Vote,
    utcnow,
)
from .writer import Writer

__all__ = [
    "ALERTS", "ANY_TARGET", "AlertBook", "AlertMessage", "AlertRecord", "ChannelCounts", "Claim",
    "ConfirmationRecord", "ConfirmationStatus", "DeliveryStatus", "DigestRecord", "DigestStatus", "Heartbeat",
    "Initialised", "Leader", "LeaderInfo", "Ledger",
    "Revision", "SourceRecord", "Store", "Upgraded", "VOTES", "Vote", "WAL_LIMIT", "Writer",
    "create_store", "init_database", "is_blank", "never_used", "open_store", "set_aside", "sqlite_path", "utcnow",
]
