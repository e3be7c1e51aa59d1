"""Mark the subscriber's matched terms in a title or summary, for HTML, plain text and Slack mrkdwn.

The text is split around the matches first and every piece is escaped for its format; the marks are
added around pieces that are already escaped. Source text is never marked safe, and a term can never
match inside an escape sequence (`amp` in `&amp;`).

Terms follow the query language (README, "Subscriptions"): words are split on anything that is not a letter or
digit, so the phrase "kv cache" marks `KV-cache`, and `quantiz*` marks `quantization`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from markupsafe import Markup

from ..models import Hit

MARKED_FIELDS = frozenset({"title", "abstract", "text", "all"})  # not author / keyword / topic
_WORD = re.compile(r"[^\W_]+")
_GAP = r"[\W_]+"  # what may stand between the words of a phrase
_EDGE_L, _EDGE_R = r"(?<![^\W_])", r"(?![^\W_])"


def terms(hits: Iterable[Hit]) -> tuple[str, ...]:
    """The hit texts worth marking, in a canonical order (so patterns can be cached)."""
    return tuple(sorted({h.text.lower() for h in hits if h.field in MARKED_FIELDS and _WORD.search(h.text)}))


class Marker:
    """Finds a subscriber's terms in a text (see `find` for how one term is searched)."""

    def __init__(self, texts: tuple[str, ...]):
        self.terms = tuple(t for t in texts if _WORD.search(t))

    def matches(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, term index) of every match, earliest first, longest on a tie."""
        found = [(start, end, n) for n, term in enumerate(self.terms) for start, end in find(term, text)]
        found.sort(key=lambda f: (f[0], -f[1]))
        return found

    def spans(self, text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for start, end, _ in self.matches(text):
            if not out or start >= out[-1][1]:  # overlapping matches: the earlier (longer) one wins
                out.append((start, end))
        return out


def _body(term: str) -> str:
    words = _WORD.findall(term)
    return _GAP.join(map(re.escape, words)) + (r"[^\W_]*" if term.endswith("*") else _EDGE_R)


@lru_cache(maxsize=4096)
def _fast(term: str) -> re.Pattern[str]:
    return re.compile(_body(term))


@lru_cache(maxsize=1024)
def _slow(term: str) -> re.Pattern[str]:
    """Compiled only for a text whose lower-casing changes its length (rare): half the compiling."""
    return re.compile(_EDGE_L + _body(term), re.IGNORECASE)


@lru_cache(maxsize=65536)
def find(term: str, text: str) -> tuple[tuple[int, int], ...]:
    """Where `term` occurs in `text` as whole words. Cached per (term, text): subscribers share terms
    ("inference") and every digest of a day shows the same papers, so each pair is searched once.

    One literal-first regex on the lower-cased text: Python's regex engine scans for a literal prefix
    quickly, while a leading look-behind or an IGNORECASE alternation makes it try every position
    (20x slower on a 1.6 kB abstract). The left word edge is checked afterwards."""
    lower = text.lower()
    if len(lower) != len(text):  # lower() changed the length (e.g. "İ"): offsets would drift
        return tuple(m.span() for m in _slow(term).finditer(text))
    return tuple(m.span() for m in _fast(term).finditer(lower)
                 if m.start() == 0 or not _is_word(lower[m.start() - 1]))


def _is_word(char: str) -> bool:
    return char.isalnum()


@lru_cache(maxsize=4096)
def _marker(texts: tuple[str, ...]) -> Marker | None:
    marker = Marker(texts)
    return marker if marker.terms else None


def pattern(texts: tuple[str, ...]) -> Marker | None:
    """The (cached) marker for these terms; None when there is nothing to mark."""
    return _marker(texts)


MARK_OPEN = '<mark style="background:#fff3b0;color:inherit;">'  # inline: marks are made after CSS inlining


def segments(text: str, marker: Marker | None) -> list[tuple[str, bool]]:
    """`text` as (piece, is_match) pairs; search once, then format the pieces for each output."""
    if marker is None:
        return [(text, False)]
    out, last = [], 0
    for start, end in marker.spans(text):
        if start > last:
            out.append((text[last:start], False))
        out.append((text[start:end], True))
        last = end
    if last < len(text):
        out.append((text[last:], False))
    return out


def joined_segments(pieces: list[list[tuple[str, bool]]], sep: str = " ") -> list[tuple[str, bool]]:
    """Segments of several texts (e.g. sentences) as the segments of the texts joined by `sep`."""
    out: list[tuple[str, bool]] = []
    for n, part in enumerate(pieces):
        if n:
            out.append((sep, False))
        out.extend(part)
    return out


def _join(parts: list[tuple[str, bool]], esc: Callable[[str], str], open_: str, close: str) -> str:
    return "".join([open_ + esc(t) + close if hit else esc(t) for t, hit in parts])


def _html_escape(text: str) -> str:
    # markupsafe's escape, without building a Markup per piece; the same five characters.
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))


def slack_escape(text: object) -> str:
    """Slack's three control characters, in this order; neutralises <!channel> and <url|label>."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def marked_html(parts: list[tuple[str, bool]]) -> Markup:
    return Markup(_join(parts, _html_escape, MARK_OPEN, "</mark>"))


def marked_text(parts: list[tuple[str, bool]]) -> str:
    return _join(parts, str, "*", "*")


def marked_slack(parts: list[tuple[str, bool]]) -> str:
    # Matches stop at word edges, so the asterisks always have the non-word neighbours Slack's bold needs.
    return _join(parts, slack_escape, "*", "*")


def mark_html(text: str, rx: Marker | None) -> Markup:
    return marked_html(segments(text, rx))


def mark_text(text: str, rx: Marker | None) -> str:
    return marked_text(segments(text, rx))


def mark_slack(text: str, rx: Marker | None) -> str:
    return marked_slack(segments(text, rx))
