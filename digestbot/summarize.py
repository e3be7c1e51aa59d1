"""A per-subscriber summary of a paper: the abstract's sentences that carry the subscriber's terms.

The lead sentence gives context; then the sentences carrying the most distinct matched terms (ties:
abstract order), in abstract order, while they fit the budget — at most `max_sentences` in all.
Every sentence comes verbatim from the abstract; only a lead longer than the budget is cut (at a word).
"""
from __future__ import annotations

import re

from .highlight import pattern, terms
from .models import Hit

# A sentence ends at . ! ? followed by space and a capital, digit or opening bracket/quote; "e.g. the"
# and "Fig. 3" style breaks mostly stay joined because a lower-case word follows.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'\[])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|et al|vs|Fig|Eq|Sec|cf)\.)$")


def sentences(abstract: str) -> list[str]:
    parts: list[str] = []
    for piece in _SENTENCE_END.split(abstract):
        piece = piece.strip()
        if not piece:
            continue
        if parts and _ABBREVIATION.search(parts[-1]):
            parts[-1] += " " + piece  # "et al. Show" was not the end of a sentence
        else:
            parts.append(piece)
    return parts


def summarize(abstract: str, hits: tuple[Hit, ...] | list[Hit], budget: int = 400, max_sentences: int = 3) -> str:
    """1-3 sentences from `abstract`, within `budget` characters (the lead cut at a word if need be)."""
    parts = sentences(abstract)
    if not parts:
        return ""
    rx = pattern(terms(hits))
    scored = [(len({m.group().lower() for m in rx.finditer(s)}) if rx else 0, i) for i, s in enumerate(parts)]
    wanted = [i for n, i in sorted(scored, key=lambda t: (-t[0], t[1])) if n > 0 and i != 0]
    chosen, used = [0], len(parts[0])
    for i in wanted:
        if len(chosen) >= max_sentences:
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
