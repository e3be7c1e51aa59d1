"""The schema of release 1694ff9, the last one made before migrations: paper, source_state, match,
delivery and digest with their indexes. A database that release made is recognised and stamped 0001.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
WAITING = "digest_id IS NULL"
ACTIVE = "status IN ('pending', 'sending')"


def text(name: str, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(), nullable=nullable)


def when(name: str, nullable: bool = True) -> sa.Column[datetime]:
    return sa.Column(name, WHEN, nullable=nullable)


def number(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table("digest", sa.Column("id", sa.Integer(), primary_key=True),
                    text("subscription"), text("channel"), text("target"), text("period"), text("status"),
                    number("papers"), number("attempts"), when("next_try"), when("lease_until"),
                    text("last_error", True), text("message_id", True), when("created", False), when("sent_at"),
                    sa.UniqueConstraint("subscription", "channel", "target", "period"))
    op.create_index("ix_digest_active", "digest", ["id"], sqlite_where=sa.text(ACTIVE),
                    postgresql_where=sa.text(ACTIVE))
    op.create_table("paper", sa.Column("id", sa.Integer(), primary_key=True), text("arxiv_id", True),
                    text("slug"), text("title"), text("abstract"), text("authors"), when("published"),
                    text("url", True), number("upvotes"), text("ai_summary", True), text("ai_keywords"),
                    text("github", True), text("project_page", True), text("sources"), when("first_seen", False),
                    when("updated", False), sa.UniqueConstraint("arxiv_id"))
    op.create_index("ix_paper_first_seen", "paper", ["first_seen"])
    op.create_index("ix_paper_slug", "paper", ["slug"])
    op.create_table("source_state", sa.Column("name", sa.String(), primary_key=True), when("last_poll"),
                    when("last_success"), text("last_error", True), when("last_error_at"), number("papers_seen"),
                    number("last_new"), text("validators"))
    op.create_table("delivery", sa.Column("id", sa.Integer(), primary_key=True), text("subscription"),
                    sa.Column("paper_id", sa.Integer(), sa.ForeignKey("paper.id"), nullable=False),
                    text("channel"), text("target"), text("status"),
                    sa.Column("digest_id", sa.Integer(), sa.ForeignKey("digest.id"), nullable=True),
                    when("created", False), sa.UniqueConstraint("subscription", "paper_id", "channel", "target"))
    op.create_index("ix_delivery_subscription", "delivery", ["subscription"])
    op.create_index("ix_delivery_digest_id", "delivery", ["digest_id"])
    op.create_index("ix_delivery_waiting", "delivery", ["subscription", "channel", "target"],
                    sqlite_where=sa.text(WAITING), postgresql_where=sa.text(WAITING))
    op.create_table("match", sa.Column("id", sa.Integer(), primary_key=True), text("subscription"),
                    sa.Column("paper_id", sa.Integer(), sa.ForeignKey("paper.id"), nullable=False),
                    sa.Column("score", sa.Float(), nullable=False), text("hits"), when("created", False),
                    sa.UniqueConstraint("subscription", "paper_id"))
    op.create_index("ix_match_paper_id", "match", ["paper_id"])


def downgrade() -> None:
    for table in ("match", "delivery", "source_state", "paper", "digest"):
        op.drop_table(table)
