"""Running daemons' heartbeats: one row per `digestbot run` process (host, pid), with when it started
and when it last beat; /healthz and `digestbot status` show their age.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made from today's tables (tests drop alembic_version to fake an old one) has it already.
    if "heartbeat" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table("heartbeat",
                    sa.Column("host", sa.String(), primary_key=True, nullable=False),
                    sa.Column("pid", sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
                    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    op.drop_table("heartbeat")
