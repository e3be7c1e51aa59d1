"""digest.claimed_by (the token of the sender holding a claim, ledger.py) and the installation table
with its one row (the database's random id, in every Message-ID).

Written to run on any database between release 1694ff9 and this revision: development versions made
either change alone, and such a database is recognised as 0001 (upkeep.recognise).

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "claimed_by" not in {c["name"] for c in inspector.get_columns("digest")}:
        with op.batch_alter_table("digest") as digest:
            digest.add_column(sa.Column("claimed_by", sa.String(), nullable=True))
    if "installation" not in inspector.get_table_names():
        installation = op.create_table("installation", sa.Column("slot", sa.Integer(), primary_key=True),
                                       sa.Column("id", sa.String(), nullable=False),
                                       sa.Column("created", sa.DateTime(timezone=True), nullable=False))
        op.bulk_insert(installation, [{"slot": 1, "id": uuid4().hex[:12], "created": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("installation")
    with op.batch_alter_table("digest") as digest:
        digest.drop_column("claimed_by")
