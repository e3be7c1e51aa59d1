"""Readers' feedback on papers: one vote (up | down) per (subscription, target, paper key), with its time.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made from today's tables (tests drop alembic_version to fake an old one) has it already.
    if "vote" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table("vote",
                    sa.Column("subscription", sa.String(), primary_key=True, nullable=False),
                    sa.Column("target", sa.String(), primary_key=True, nullable=False),
                    sa.Column("paper", sa.String(), primary_key=True, nullable=False),
                    sa.Column("vote", sa.String(), nullable=False),
                    sa.Column("at", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    op.drop_table("vote")
