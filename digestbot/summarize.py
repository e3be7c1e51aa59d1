"""A per-subscriber summary of a paper: the abstract's sentences that carry the subscriber's terms.

The lead sentence gives context; then the sentences with the most of the subscriber's matched words,
in abstract order, while they fit the budget. Every sentence comes verbatim from the abstract.
"""
from __future__ import annotations

import re

from .models import Hit

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_WORD = re.compile(r"[^\W_]+")


def sentences(abstract: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(abstract) if s.strip()]


def hit_words(hits: tuple[Hit, ...] | list[Hit]) -> set[str]:
    words: set[str] = set()
    for hit in hits:
        if hit.field != "topic":
            words.update(w.lower().rstrip("*") for w in _WORD.findall(hit.text))
    return words


def summarize(abstract: str, hits: tuple[Hit, ...] | list[Hit], budget: int = 400, max_sentences: int = 3) -> str:
    """1-3 sentences from `abstract`, within `budget` characters (the lead cut at a word if need be)."""
    parts = sentences(abstract)
    if not parts:
        return ""
    words = hit_words(hits)
    scored = [(len(words & {w.lower() for w in _WORD.findall(s)}), i) for i, s in enumerate(parts)]
    wanted = [i for n, i in sorted(scored, key=lambda t: (-t[0], t[1])) if n > 0 and i != 0]
    chosen, used = [0], len(parts[0])
    for i in wanted:
        if len(chosen) >= max_sentences:
            break
        if used + 1 + len(parts[i]) <= budget:
            chosen.append(i)
            used += 1 + len(parts[i])
    text = " ".join(parts[i] for i in sorted(chosen))
    return text if len(text) <= budget else _cut(text, budget)


def _cut(text: str, budget: int) -> str:
    cut = text[: budget - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + "…"
