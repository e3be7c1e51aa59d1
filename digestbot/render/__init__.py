"""The Jinja environment and filters; a Digest becomes a Message (subject, text, HTML, Slack posts).

HTML templates are autoescaped (`digest.html.j2` needs `enabled_extensions` to include "html.j2":
`select_autoescape(["html"])` alone would not escape it); every undefined variable is an error; URLs
from source data are allowed only when they are http(s); Slack text is escaped with `slack_escape`.
Matched terms are marked by highlight.py *after* escaping, so no source text is ever marked safe.

The HTML template carries its CSS in a <style> block; inline.py inlines it into the template once
(css-inline, remote loading off), keeping the dark-mode @media rule. A digest whose inlined HTML would
pass EMAIL_MAX_BYTES (Gmail clips at ~102 KB and hides the footer) is re-rendered with fewer papers and
an "and N more" link.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ..bundled import templates_folder
from ..models import Digest, Hit, Match, Message, Paper, SlackPost
from .highlight import joined_segments, marked_html, marked_slack, marked_text, pattern, segments, slack_escape, terms
from .inline import inline_template, inliner
from .item import Item
from .slack_posts import digest_blocks, split_posts
from .summarize import choose, cut
from .urls import one_line, safe_url

__all__ = ["Renderer", "Item", "item", "why", "slack_escape", "safe_url", "one_line", "authors_short"]
log = logging.getLogger(__name__)
SUBJECT_MAX = 150
EMAIL_MAX_BYTES = 100_000
TITLE_MAX, TLDR_MAX, WHY_MAX, SUMMARY_BUDGET = 300, 300, 300, 400  # keep a Slack section < 3000 chars


def authors_short(authors: tuple[str, ...] | list[str], keep: int = 3) -> str:
    authors = list(authors)
    if len(authors) <= keep:
        return ", ".join(authors)
    return ", ".join(authors[:keep]) + " et al."


# Items kept by a Renderer (`_item`), least recently used dropped: at 10k subscriptions x 200 papers the
# 88,000 items shown are 9,100 distinct ones, and 4,096 kept serve 77% of them (~8 MB).
ITEMS_KEPT = 4096
WHY_SHORT = 80  # the "matched:" line: what a reader takes in at a glance


def why(match: Match) -> str:
    """'matched: LLM(s), language model(s), topic efficient-inference (kv cache)': the query's terms that
    hit, variants of one term as one entry, each topic with its own terms that hit, within WHY_SHORT
    characters ("+2 more" when cut); for a paper a subscription's votes chose (relevance/learner.py),
    the rated paper it is like."""
    learned = [hit.text for hit in match.hits if hit.field == "learned"]
    if learned:
        return cut(learned[0], WHY_MAX)
    own: list[str] = []
    topics: dict[str, list[str]] = {}
    for hit in match.hits:
        if hit.field == "topic":
            topics.setdefault(hit.text, [])
        elif hit.topic is None:
            own.append(hit.text)
        else:
            topics.setdefault(hit.topic, []).append(hit.text)
    reasons = _variants(own) + [f"topic {name}" + (f" ({', '.join(_variants(hits))})" if hits else "")
                                for name, hits in topics.items()]
    if not reasons:
        return "all new papers"
    line = "matched: " + reasons[0]
    for k, reason in enumerate(reasons[1:], start=1):
        more = len(reasons) - k
        if len(line) + 2 + len(reason) + (len(f", +{more - 1} more") if more > 1 else 0) > WHY_SHORT:
            return f"{line}, +{more} more"
        line += ", " + reason
    return line


def _variants(labels: list[str]) -> list[str]:
    """Distinct terms, a singular and its plural as one ("LLM", "LLMs" -> "LLM(s)"), in first-seen order."""
    forms: dict[str, list[str]] = {}
    for label in labels:
        lowered = label.lower()
        base = lowered[:-1] if lowered.endswith("s") and len(lowered) > 3 and not lowered.endswith("ss") else lowered
        seen = forms.setdefault(base, [])
        if label not in seen:
            seen.append(label)
    result = []
    for base, seen in forms.items():
        singular = next((s for s in seen if s.lower() == base), None)
        plural = len({s.lower() for s in seen}) > 1 or singular is None
        result.append(f"{singular}(s)" if singular is not None and plural else seen[0])
    return result


def title_link(paper: Paper) -> str | None:
    """The Hugging Face page when Hugging Face knows the paper, else arXiv, else what the source gave."""
    on_hf = "huggingface.co/" in (paper.url or "") or paper.upvotes > 0 or bool(paper.ai_summary)
    if paper.arxiv_id:
        return paper.hf_url if on_hf else paper.arxiv_url
    return paper.url


@lru_cache(maxsize=4096)
def _static(title: str, link: str | None, authors: tuple[str, ...], published: datetime | None, arxiv: str | None,
            pdf: str | None, code: str | None, project: str | None,
            tldr: str | None) -> tuple[str, str, str, str, str, str, str, str, str, str]:
    """The parts of an item that are the same for every subscriber: computed once per paper."""
    short = cut(title, TITLE_MAX)
    return (short, slack_escape(short), safe_url(link), authors_short(authors),
            published.strftime("%d %b %Y") if published else "", safe_url(arxiv), safe_url(pdf),
            safe_url(code), safe_url(project), cut(one_line(tldr or ""), TLDR_MAX))


def item(match: Match) -> Item:
    p = match.paper
    title, title_slack, link, authors, date, arxiv, pdf, code, project, tldr = _static(
        p.title, title_link(p), p.authors, p.published, p.arxiv_url, p.pdf_url, p.github, p.project_page, p.ai_summary)
    marker = pattern(terms(match.hits))
    # When the TL;DR is the abstract's first sentence (Hugging Face often does that), don't repeat it.
    lead = not tldr or not p.abstract.startswith(tldr.rstrip("…"))
    chosen = choose(p.abstract, match.hits, budget=SUMMARY_BUDGET, marker=marker, lead=lead)
    summary = " ".join(chosen)
    # Searched sentence by sentence: (term, sentence) results are cached, a joined summary is new text.
    t, s = segments(title, marker), joined_segments([segments(sentence, marker) for sentence in chosen])
    return Item(title, marked_html(t), marked_text(t), title_slack, link, authors, date, p.upvotes, arxiv, pdf,
                code, project, why(match), summary, marked_html(s), marked_text(s), marked_slack(s), tldr)


class Renderer:
    def __init__(self, templates: Path | None = None):
        self.folder = templates  # the user's templates folder (render/apart.py makes a Renderer like this one)
        loaders = [FileSystemLoader(str(templates_folder()))]  # the top-level templates/ (see bundled.py)
        if templates is not None:
            loaders.insert(0, FileSystemLoader(str(templates)))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html", "htm", "html.j2"), default_for_string=False,
                                         default=False),
            undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            auto_reload=False,  # templates are compiled once per Renderer, not stat()ed per render
        )
        self.env.filters.update(slack=slack_escape, url=safe_url, one_line=one_line)
        self.inliner = inliner()
        self.templates = {f: self.env.get_template(f"digest.{f}.j2") for f in ("html", "txt")}
        self._items: OrderedDict[tuple[int, tuple[Hit, ...]], tuple[Paper, Item]] = OrderedDict()  # see `_item`
        # Slack blocks are built in Python (slack_posts.py) unless the user's folder overrides them.
        custom = templates is not None and (templates / "digest.slack.j2").is_file()
        self.slack_template = self.env.get_template("digest.slack.j2") if custom else None
        source = self.env.loader.get_source(self.env, "digest.html.j2")[0]  # type: ignore[union-attr]
        inlined = inline_template(source, self.inliner)
        self.preinlined = inlined is not None
        if inlined is not None:  # the overlay keeps autoescaping on for a template made from a string
            self.templates["html"] = self.env.overlay(autoescape=True).from_string(inlined)

    def _item(self, match: Match) -> Item:
        """`item(match)`, made once per paper and reasons: an item depends on nothing else, and at 10,000
        subscriptions many share a paper for the same reasons (the hits of a common word: the matcher
        shares those tuples). Keyed by the paper object (the send pass builds each paper once) and kept
        with it, so that a key's id() is never another paper's."""
        key = (id(match.paper), match.hits)
        kept = self._items.get(key)
        if kept is not None and kept[0] is match.paper:
            try:
                self._items.move_to_end(key)
            except KeyError:  # dropped meanwhile by another thread (the web process renders in several)
                pass
            return kept[1]
        made = item(match)
        self._items[key] = (match.paper, made)
        if len(self._items) > ITEMS_KEPT:
            self._items.popitem(last=False)  # the least recently used (C calls: safe beside the web's threads)
        return made

    def subject(self, digest: Digest) -> str:
        """'5 new papers on LLM inference — Mon 22 Nov'; capped at max_papers, what it shows of how
        many: '15 of 39 new papers on LLM inference — Mon 22 Nov'."""
        count = digest.total
        noun = "paper" if count == 1 else "papers"
        shown = f"{len(digest.matches)} of {count}" if digest.more else f"{count or 'No'}"
        when = digest.period_start.strftime("%a %d %b") if digest.period_start else digest.period
        return one_line(f"{shown} new {noun} on {digest.subscription} — {when}")[:SUBJECT_MAX]

    def render(self, digest: Digest, *, html: bool = True, slack: bool = True) -> Message:
        """Every format; `html=False` or `slack=False` leaves that one out (empty), for a channel that
        does not carry it: an email never shows Slack blocks, a Slack post never the HTML."""
        items = [self._item(m) for m in digest.matches]
        subject = self.subject(digest)
        context = {"digest": digest, "items": items, "subject": subject}
        return Message(subject=subject, text=self.templates["txt"].render(context),
                       html=self.html(digest, items, subject) if html else "",
                       slack_posts=self.slack(context) if slack else [])

    def html(self, digest: Digest, items: list[Item], subject: str) -> str:
        html = self._render_html(digest, items, subject)
        size = len(html.encode())
        keep = len(items)
        while size > EMAIL_MAX_BYTES and keep > 0:  # shrink in proportion, then step down
            keep = min(keep - 1, int(keep * EMAIL_MAX_BYTES / size * 0.95))
            cut_digest = replace(digest, matches=digest.matches[:keep], more=digest.more + len(items) - keep)
            html = self._render_html(cut_digest, items[:keep], subject)
            size = len(html.encode())
        if keep < len(items):
            log.info("%s: HTML email cut to %d of %d papers to stay under %d bytes", digest.subscription_id,
                     keep, len(items), EMAIL_MAX_BYTES)
        return html

    def _render_html(self, digest: Digest, items: list[Item], subject: str) -> str:
        raw = self.templates["html"].render({"digest": digest, "items": items, "subject": subject})
        return raw if self.preinlined else self.inliner.inline(raw)

    def slack(self, context: dict[str, Any]) -> list[SlackPost]:
        if self.slack_template is None:
            header, papers, footer = digest_blocks(context["digest"], context["items"], context["subject"])
            return split_posts(slack_escape(context["subject"]), header, papers, footer)
        data = json.loads(self.slack_template.render(context))
        return split_posts(data["text"], data["header"], data["papers"], data["footer"])
