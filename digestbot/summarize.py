"""A per-subscriber summary of a paper: the abstract's sentences that carry the subscriber's terms.

The lead sentence gives context; then the sentences carrying the most distinct matched terms (ties:
abstract order), in abstract order, while they fit the budget — at most `max_sentences` in all.
Every sentence comes verbatim from the abstract; only a lead longer than the budget is cut (at a word).
"""
from __future__ import annotations

import re
from functools import lru_cache

from .highlight import pattern, terms
from .models import Hit

# A sentence ends at . ! ? followed by space and a capital, digit or opening bracket/quote; "e.g. the"
# and "Fig. 3" style breaks mostly stay joined because a lower-case word follows.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'\[])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Eq|Sec|cf)\.)$")


@lru_cache(maxsize=8192)
def sentences(abstract: str) -> tuple[str, ...]:
    """The abstract's sentences (cached: every subscriber's summary of a paper splits the same text)."""
    parts: list[str] = []
    for piece in _SENTENCE_END.split(abstract):
        piece = piece.strip()
        if not piece:
            continue
        if parts and _ABBREVIATION.search(parts[-1]):
            parts[-1] += " " + piece  # "et al. Show" was not the end of a sentence
        else:
            parts.append(piece)
    return tuple(parts)


def summarize(abstract: str, hits: tuple[Hit, ...] | list[Hit], budget: int = 400, max_sentences: int = 3) -> str:
    """1-3 sentences from `abstract`, within `budget` characters (the lead cut at a word if need be)."""
    parts = sentences(abstract)
    if not parts:
        return ""
    rx = pattern(terms(hits))
    chosen, used = [0], len(parts[0])
    if rx is not None:
        scored = [(-rx.count_terms(s), i) for i, s in enumerate(parts[1:], 1)]
        for score, i in sorted(scored):
            if score == 0 or len(chosen) >= max_sentences:
                break
            if used + 1 + len(parts[i]) <= budget:
                chosen.append(i)
                used += 1 + len(parts[i])
    text = " ".join(parts[i] for i in sorted(chosen))
    return text if len(text) <= budget else cut(text, budget)


def cut(text: str, budget: int) -> str:
    """`text` shortened to at most `budget` characters at a word boundary, with an ellipsis."""
    if len(text) <= budget:
        return text
    head = text[: budget - 1]
    cut_at = head.rsplit(" ", 1)[0] if " " in head else head
    return cut_at.rstrip(",;:") + "…"
