"""The Jinja environment and filters; a Digest becomes a Message (subject, text, HTML, Slack blocks).

HTML templates are autoescaped (`digest.html.j2` needs `enabled_extensions` to include "html.j2":
`select_autoescape(["html"])` alone would not escape it); every undefined variable is an error; URLs
from source data are allowed only when they are http(s); Slack text is escaped with `slack_escape`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, select_autoescape

from .models import Digest, Match, Message, SlackPost
from .summarize import summarize

SUBJECT_MAX = 150


def slack_escape(text: object) -> str:
    """Slack's three control characters, in this order; neutralises <!channel> and <url|label>."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: object) -> str:
    value = str(url or "").strip()
    return value if value.lower().startswith(("https://", "http://")) and not any(c in value for c in " \r\n\t<>\"") else ""


def one_line(text: object) -> str:
    """Text for a header or a subject: no line breaks, whatever the source sent."""
    return " ".join(str(text).split())


def authors_short(authors: tuple[str, ...] | list[str], keep: int = 3) -> str:
    authors = list(authors)
    if len(authors) <= keep:
        return ", ".join(authors)
    return ", ".join(authors[:keep]) + " et al."


def why(match: Match) -> str:
    """'matched: speculative decoding (title), topic efficient-inference'."""
    reasons = []
    for hit in match.hits:
        if hit.field == "topic":
            reasons.append(f"topic {hit.text}")
        elif hit.topic is None:
            reasons.append(f"{hit.text} ({hit.field})")
    reasons = list(dict.fromkeys(reasons))
    return "matched: " + ", ".join(reasons) if reasons else "all new papers"


@dataclass(frozen=True)
class Item:
    """One paper as the templates see it."""

    title: str
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
    tldr: str


def item(match: Match) -> Item:
    p = match.paper
    return Item(title=p.title, link=safe_url(p.link), authors=authors_short(p.authors),
                date=p.published.strftime("%d %b %Y") if p.published else "",
                upvotes=p.upvotes, arxiv=safe_url(p.arxiv_url), pdf=safe_url(p.pdf_url),
                code=safe_url(p.github), project=safe_url(p.project_page), why=why(match),
                summary=summarize(p.abstract, match.hits), tldr=p.ai_summary or "")


class Renderer:
    def __init__(self, templates: Path | None = None):
        loaders = [PackageLoader("digestbot", "templates")]
        if templates is not None:
            loaders.insert(0, FileSystemLoader(str(templates)))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "html.j2"), default_for_string=False,
                                         default=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )
        self.env.filters.update(slack=slack_escape, url=safe_url, one_line=one_line)

    def subject(self, digest: Digest) -> str:
        count = len(digest.matches) + digest.more
        noun = "paper" if count == 1 else "papers"
        return one_line(f"{count} new {noun} for {digest.subscription} — {digest.period}")[:SUBJECT_MAX]

    def render(self, digest: Digest) -> Message:
        context = {"digest": digest, "items": [item(m) for m in digest.matches], "subject": self.subject(digest)}
        slack = json.loads(self.env.get_template("digest.slack.j2").render(context))
        return Message(subject=context["subject"],
                       text=self.env.get_template("digest.txt.j2").render(context),
                       html=self.env.get_template("digest.html.j2").render(context),
                       slack_posts=[SlackPost(slack["text"], slack["blocks"])])
