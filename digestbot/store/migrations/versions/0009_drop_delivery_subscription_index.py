"""Drop ix_delivery_subscription: the unique constraint (subscription, paper_id, channel, target) starts with
the same column and serves every look-up by subscription. On PostgreSQL each delivery row written (a poll's
matches) and each one moved into its digest (an update of digest_id: no in-place update there) also wrote an
entry into this index: 180,000 index entries a day at 10,000 subscriptions, for nothing.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made from today's tables (tests drop alembic_version to fake an old one) never had it.
    if "ix_delivery_subscription" in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("delivery")}:
        op.drop_index("ix_delivery_subscription", table_name="delivery")


def downgrade() -> None:
    op.create_index("ix_delivery_subscription", "delivery", ["subscription"])
