"""A per-subscriber summary of a paper: the abstract's sentences that carry the subscriber's terms.

The lead sentence gives context; then the sentences carrying the most distinct matched terms (ties:
abstract order), in abstract order, while they fit the budget — at most `max_sentences` in all.
Every sentence comes verbatim from the abstract; only a lead longer than the budget is cut (at a word).
"""
from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache

from ..models import Hit
from .highlight import Marker, find, pattern, terms

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
    return " ".join(choose(abstract, hits, budget, max_sentences, marker, lead))


def choose(abstract: str, hits: tuple[Hit, ...] | list[Hit], budget: int = 400, max_sentences: int = 3,
           marker: Marker | None = None, lead: bool = True) -> list[str]:
    """The summary's sentences in abstract order (joined by one space they fit `budget`)."""
    parts, _ = _split(abstract)
    if not parts or (len(parts) == 1 and not lead):
        return []
    if len(parts[0]) > budget and lead:
        return [cut(parts[0], budget)]
    marker = marker or pattern(terms(hits))
    chosen, used = ([0], len(parts[0])) if lead else ([], -1)
    if marker is not None and len(parts) > 1:
        carried: dict[int, int] = {}  # sentence -> how many distinct terms it carries
        for term in marker.terms:
            for i in _term_sentences(term, abstract):
                carried[i] = carried.get(i, 0) + 1
        for _, i in sorted((-n, i) for i, n in carried.items() if i != 0):
            if len(chosen) >= max_sentences:
                break
            if used + 1 + len(parts[i]) <= budget:
                chosen.append(i)
                used += 1 + len(parts[i])
    return [parts[i] for i in sorted(chosen)]


@lru_cache(maxsize=65536)
def _term_sentences(term: str, abstract: str) -> tuple[int, ...]:
    """Which sentences of `abstract` carry `term` (cached: subscribers share terms and papers)."""
    starts = _split(abstract)[1]
    return tuple(sorted({bisect_right(starts, start) - 1 for start, _ in find(term, abstract)}))


def cut(text: str, budget: int) -> str:
    """`text` shortened to at most `budget` characters at a word boundary, with an ellipsis."""
    if len(text) <= budget:
        return text
    head = text[: budget - 1]
    cut_at = head.rsplit(" ", 1)[0] if " " in head else head
    return cut_at.rstrip(",;:") + "…"
