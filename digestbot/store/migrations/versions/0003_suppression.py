"""The suppression list: (subscription, target) pairs a reader left through a one-click link
(digestbot serve). The pipeline sends them nothing, whatever the config says, until they undo it.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made before migrations is recognised as 0001 whatever it holds (upkeep.recognise); one
    # made from today's tables (tests drop alembic_version to fake that) has the table already.
    if "suppression" in sa.inspect(op.get_bind()).get_table_names():
        return
    op.create_table("suppression",
                    sa.Column("subscription", sa.String(), primary_key=True, nullable=False),
                    sa.Column("target", sa.String(), primary_key=True, nullable=False),
                    sa.Column("since", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    op.drop_table("suppression")
