"""The embedding table: each paper's sentence embedding, computed once when it is stored, for relevance
learned over `[relevance] representation = "semantic"` (relevance/embed.py).

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made from today's tables (tests drop alembic_version to fake an old one) has it already.
    if "embedding" not in sa.inspect(op.get_bind()).get_table_names():
        op.create_table("embedding",
                        sa.Column("model", sa.String(), primary_key=True, nullable=False),
                        sa.Column("paper", sa.String(), primary_key=True, nullable=False),
                        sa.Column("vector", sa.LargeBinary(), nullable=False))


def downgrade() -> None:
    op.drop_table("embedding")
