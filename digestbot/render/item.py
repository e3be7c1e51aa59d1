"""A paper as the templates and the Slack blocks see it (render/__init__.py makes them from matches)."""
from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup


@dataclass(slots=True)
class Item:
    """One paper as the templates see it; `*_html` are Markup (escaped, then marked), the rest plain."""

    title: str
    title_html: Markup
    title_text: str
    title_slack: str  # escaped, unmarked: Slack shows it bold inside a link, where bold cannot nest
    link: str
    authors: str
    date: str
    upvotes: int
    arxiv: str
    pdf: str
    code: str
    project: str
    why: str
    summary: str
    summary_html: Markup
    summary_text: str
    summary_slack: str
    tldr: str
