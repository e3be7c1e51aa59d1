"""Alerts (alerts.py): source_state.failures (failed polls in a row) and its polls and failed_polls (all
time, for /metrics), source_news (when each source listed
new papers: its usual gaps are learned from it, seeded here from the papers' first sightings), the alert
table (one row per problem) and alert_message (the text of each alert, delivered by the digest ledger).

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SEEDED = timedelta(days=42)  # writer.NEWS_KEPT


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    # A database made from today's tables (tests drop alembic_version to fake an old one) has them already.
    columns = {c["name"] for c in inspector.get_columns("source_state")}
    added = [name for name in ("failures", "polls", "failed_polls") if name not in columns]
    if added:
        with op.batch_alter_table("source_state") as batch:
            for name in added:
                batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    tables = set(inspector.get_table_names())
    if "source_news" not in tables:
        news = op.create_table("source_news",
                               sa.Column("source", sa.String(), primary_key=True, nullable=False),
                               sa.Column("at", sa.DateTime(timezone=True), primary_key=True, nullable=False),
                               sa.Column("new", sa.Integer(), nullable=False))
        _seed(bind, news)
    if "alert" not in tables:
        op.create_table("alert",
                        sa.Column("problem", sa.String(), primary_key=True, nullable=False),
                        sa.Column("state", sa.String(), nullable=False),
                        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
                        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
                        sa.Column("announced", sa.Boolean(), nullable=False),
                        sa.Column("last_alert_day", sa.String(), nullable=True),
                        sa.Column("detail", sa.String(), nullable=False))
    if "alert_message" not in tables:
        op.create_table("alert_message",
                        sa.Column("period", sa.String(), primary_key=True, nullable=False),
                        sa.Column("problem", sa.String(), nullable=False),
                        sa.Column("subject", sa.String(), nullable=False),
                        sa.Column("text", sa.String(), nullable=False),
                        sa.Column("created", sa.DateTime(timezone=True), nullable=False))


def _seed(bind: sa.Connection, news: sa.Table | None) -> None:
    """The recent history from the papers themselves: each poll stamped its new papers' first_seen, and
    a paper lists the sources that saw it. So alerts know a source's usual gaps from the first day."""
    if news is None:
        return
    paper = sa.table("paper", sa.column("sources", sa.String()), sa.column("first_seen", sa.DateTime()))
    since = datetime.now(UTC) - SEEDED
    counts: dict[tuple[str, datetime], int] = {}
    for sources, first_seen in bind.execute(sa.select(paper.c.sources, paper.c.first_seen)
                                            .where(paper.c.first_seen >= since)):
        try:
            names = json.loads(sources or "[]")
        except ValueError:
            continue
        if names and isinstance(names[0], str):
            key = (names[0], first_seen)  # the source that listed it first
            counts[key] = counts.get(key, 0) + 1
    if counts:
        op.bulk_insert(news, [{"source": source, "at": at, "new": n} for (source, at), n in counts.items()])


def downgrade() -> None:
    op.drop_table("alert_message")
    op.drop_table("alert")
    op.drop_table("source_news")
    with op.batch_alter_table("source_state") as batch:
        for name in ("failed_polls", "polls", "failures"):
            batch.drop_column(name)
