"""Mark the subscriber's matched terms in a title or summary, for HTML, plain text and Slack mrkdwn.

The text is split around the matches first and every piece is escaped for its format; the marks are
added around pieces that are already escaped. Source text is never marked safe, and a term can never
match inside an escape sequence (`amp` in `&amp;`).

Terms follow the query language (DESIGN 3.4): words are split on anything that is not a letter or
digit, so the phrase "kv cache" marks `KV-cache`, and `quantiz*` marks `quantization`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Iterable

from markupsafe import Markup, escape

from .models import Hit

MARKED_FIELDS = frozenset({"title", "abstract", "text", "all"})  # not author / keyword / topic
_WORD = re.compile(r"[^\W_]+")
_GAP = r"[\W_]+"  # what may stand between the words of a phrase
_EDGE_L, _EDGE_R = r"(?<![^\W_])", r"(?![^\W_])"


def terms(hits: Iterable[Hit]) -> tuple[str, ...]:
    """The hit texts worth marking, in a canonical order (so patterns can be cached)."""
    return tuple(sorted({h.text.lower() for h in hits if h.field in MARKED_FIELDS and _WORD.search(h.text)}))


@lru_cache(maxsize=4096)
def pattern(texts: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive regex for all the terms, longest first so a phrase wins over its words."""
    parts = []
    for text in sorted(texts, key=len, reverse=True):
        prefix = text.endswith("*")
        words = _WORD.findall(text)
        if not words:
            continue
        body = _GAP.join(re.escape(w) for w in words)
        parts.append(_EDGE_L + body + (r"[^\W_]*" if prefix else _EDGE_R))
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _apply(text: str, rx: re.Pattern[str] | None, esc: Callable[[str], str], open_: str, close: str) -> str:
    if rx is None:
        return esc(text)
    out, last = [], 0
    for m in rx.finditer(text):
        out.append(esc(text[last:m.start()]))
        out.append(open_ + esc(m.group()) + close)
        last = m.end()
    out.append(esc(text[last:]))
    return "".join(out)


def _html_escape(text: str) -> str:
    return str(escape(text))


def slack_escape(text: object) -> str:
    """Slack's three control characters, in this order; neutralises <!channel> and <url|label>."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mark_html(text: str, rx: re.Pattern[str] | None) -> Markup:
    return Markup(_apply(text, rx, _html_escape, "<mark>", "</mark>"))


def mark_text(text: str, rx: re.Pattern[str] | None) -> str:
    return _apply(text, rx, str, "*", "*")


def mark_slack(text: str, rx: re.Pattern[str] | None) -> str:
    # Matches stop at word edges, so the asterisks always have the non-word neighbours Slack's bold needs.
    return _apply(text, rx, slack_escape, "*", "*")
