"""What one subscription's rated papers say about a new paper: keep it or not, how relevant, and why.

Positive examples are the papers its readers marked "more like this" and its topics' `like` papers;
negative ones the papers they marked "not for me". A new paper is compared with both sides, in a
`Space` (space.py): its similarity to the positive centroid minus that to the negative centroid is
its predicted relevance (the digest's order). A paper the query matched is held back when it is
clearly closer to the rejected papers; one the query missed is included when it is close to the liked
papers in absolute terms and clearly closer to them than to the rejected ones. The rated paper most
like it is the explanation. Below MIN_POSITIVE positive examples nothing is learned; below
MIN_NEGATIVE negative ones nothing is held back (benchmarks/bench_relevance.py measured the limits).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models import Paper
from .space import Space

MIN_POSITIVE = 3  # liked papers (votes up and `like` examples) before anything is learned
MIN_NEGATIVE = 3  # rejected papers before a query match may be held back


@dataclass(frozen=True)
class Limits:
    """Per representation: cosines of TF-IDF vectors and of sentence embeddings live on other scales."""
    include: float  # least similarity to the liked centroid for a paper the query missed
    include_margin: float  # ... which also exceeds its similarity to the rejected centroid by this much
    hold_margin: float  # a query match is held back when closer to the rejected centroid by this much


LIMITS = {"lexical": Limits(include=0.18, include_margin=0.08, hold_margin=0.02),
          "semantic": Limits(include=0.72, include_margin=0.08, hold_margin=0.02)}


@dataclass(frozen=True)
class Example:
    paper: Paper
    liked: bool
    how: str  # "you marked more like this" / "an example of topic X" / "you marked not for me"


@dataclass(frozen=True)
class Verdict:
    keep: bool
    relevance: float  # similarity to the liked minus to the rejected centroid
    because: Example | None  # the rated paper most like it (for a learned choice); None: the query decided


class Taste:
    """One subscription's examples in one space, ready to judge new papers."""

    def __init__(self, space: Space, examples: Sequence[Example], vectors: Sequence[Any],
                 limits: Limits | None = None):
        self.space, self.limits = space, limits or LIMITS[space.name]
        self.liked = [(e, v) for e, v in zip(examples, vectors, strict=True) if e.liked]
        self.rejected = [(e, v) for e, v in zip(examples, vectors, strict=True) if not e.liked]
        self.learns = len(self.liked) >= MIN_POSITIVE
        self.holds = self.learns and len(self.rejected) >= MIN_NEGATIVE
        centroids = [space.centroid([v for _, v in self.liked])] if self.learns else []
        if self.holds:
            centroids.append(space.centroid([v for _, v in self.rejected]))
        self.centroids = centroids

    def judge(self, vectors: Sequence[Any], matched: Sequence[bool]) -> list[Verdict]:
        """A verdict per paper (`matched`: the query or a topic selected it)."""
        if not self.learns or not vectors:
            return [Verdict(m, 0.0, None) for m in matched]
        sims = self.space.similarities(vectors, self.centroids)
        limits, verdicts = self.limits, []
        for k, (row, was_matched) in enumerate(zip(sims, matched, strict=True)):
            liked, rejected = row[0], (row[1] if self.holds else 0.0)
            relevance = liked - rejected
            if was_matched and self.holds and rejected - liked > limits.hold_margin:
                verdicts.append(Verdict(False, relevance, self._nearest(vectors[k], self.rejected)))
            elif not was_matched and liked >= limits.include and relevance > limits.include_margin:
                verdicts.append(Verdict(True, relevance, self._nearest(vectors[k], self.liked)))
            else:
                verdicts.append(Verdict(was_matched, relevance, None))
        return verdicts

    def _nearest(self, vector: Any, side: list[tuple[Example, Any]]) -> Example:
        sims = self.space.similarities([vector], [v for _, v in side])[0]
        return side[max(range(len(side)), key=sims.__getitem__)][0]
