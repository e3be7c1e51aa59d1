"""A per-subscriber summary of a paper: the abstract's sentences that carry the subscriber's terms.

The lead sentence gives context; then the sentences carrying the most distinct matched terms (ties:
abstract order), in abstract order, while they fit the budget — at most `max_sentences` in all.
Every sentence comes verbatim from the abstract; only a lead longer than the budget is cut (at a word).
"""
from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache

from .highlight import Marker, pattern, terms
from .models import Hit

# A sentence ends at . ! ? followed by space and a capital, digit or opening bracket/quote; "e.g. the"
# and "Fig. 3" style breaks mostly stay joined because a lower-case word follows.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'\[])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Eq|Sec|cf)\.)$")


@lru_cache(maxsize=8192)
def _split(abstract: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The abstract's sentences and where each starts (cached: every subscriber's summary of a paper
    splits the same text)."""
    parts: list[str] = []
    starts: list[int] = []
    position = 0
    for piece in _SENTENCE_END.split(abstract):
        stripped = piece.strip()
        start = abstract.find(stripped, position) if stripped else position
        position = start + len(stripped)
        if not stripped:
            continue
        if parts and _ABBREVIATION.search(parts[-1]):
            parts[-1] = abstract[starts[-1]:position]  # "et al. Show" was not the end of a sentence
        else:
            parts.append(stripped)
            starts.append(start)
    return tuple(parts), tuple(starts)


def sentences(abstract: str) -> tuple[str, ...]:
    return _split(abstract)[0]


def summarize(abstract: str, hits: tuple[Hit, ...] | list[Hit], budget: int = 400, max_sentences: int = 3,
              marker: Marker | None = None, lead: bool = True) -> str:
    """1-3 sentences from `abstract`, within `budget` characters (the lead cut at a word if need be).

    `marker`: the hits' Marker when the caller already has it. `lead=False`: the caller shows the
    first sentence already (as the TL;DR); only sentences carrying the terms are chosen."""
    parts, starts = _split(abstract)
    if not parts or (len(parts) == 1 and not lead):
        return ""
    if len(parts) == 1:
        return parts[0] if len(parts[0]) <= budget else cut(parts[0], budget)
    marker = marker or pattern(terms(hits))
    chosen, used = ([0], len(parts[0])) if lead else ([], -1)
    if marker is not None:
        found: list[set[int]] = [set() for _ in parts]  # one search over the abstract, then by sentence
        for start, _, term in marker.matches(abstract):
            found[bisect_right(starts, start) - 1].add(term)
        ranked = sorted((-len(found[i]), i) for i in range(1, len(parts)) if found[i])
        for _, i in ranked:
            if len(chosen) >= max_sentences:
                break
            if used + 1 + len(parts[i]) <= budget:
                chosen.append(i)
                used += 1 + len(parts[i])
    text = " ".join(parts[i] for i in sorted(chosen))
    return text if len(text) <= budget else cut(text, budget)  # only a lead longer than the budget


def cut(text: str, budget: int) -> str:
    """`text` shortened to at most `budget` characters at a word boundary, with an ellipsis."""
    if len(text) <= budget:
        return text
    head = text[: budget - 1]
    cut_at = head.rsplit(" ", 1)[0] if " " in head else head
    return cut_at.rstrip(",;:") + "…"
