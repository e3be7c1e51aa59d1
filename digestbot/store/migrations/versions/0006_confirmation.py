"""Subscribe requests waiting for their reader's click (double opt-in, `digestbot serve`'s subscribe page):
what was asked, by which address, when, and whether its mail went and was confirmed.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made from today's tables (tests drop alembic_version to fake an old one) has it already.
    if "confirmation" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table("confirmation",
                    sa.Column("id", sa.Integer(), primary_key=True, nullable=False),
                    sa.Column("subscription", sa.String(), nullable=False),
                    sa.Column("query", sa.String(), nullable=False),
                    sa.Column("target", sa.String(), nullable=False),
                    sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
                    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
                    sa.Column("status", sa.String(), nullable=False),
                    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_confirmation_target", "confirmation", ["target", "requested_at"])
    op.create_index("ix_confirmation_requested_at", "confirmation", ["requested_at"])


def downgrade() -> None:
    op.drop_table("confirmation")
