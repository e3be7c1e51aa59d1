"""What one subscription's rated papers say about a new paper: keep it or not, how relevant, and why.

Positive examples are the papers its readers marked "more like this" and its topics' `like` papers;
negative ones the papers they marked "not for me". A new paper is compared with both sides, in a
`Space` (space.py): its similarity to the positive centroid minus that to the negative centroid is
its predicted relevance (the digest's order).

Where to draw the line is learned per subscription, from its own examples, not from constants: each
rated paper is scored against centroids made without it (leave-one-out), as a new paper would be,
and the threshold that best separates the liked from the rejected ones there (the highest F1 of
keeping the papers scoring above it) is the one a query match must reach not to be held back. A
paper the query missed must score as high as the liked examples typically do (their leave-one-out
median), and higher than any rejected one, to be included. When the examples do not separate,
nothing is held back or included: the query decides. The rated paper most like a paper is the
explanation. Below MIN_POSITIVE positive examples nothing is learned; below MIN_NEGATIVE negative
ones nothing is held back.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..models import Paper
from .space import Matrix, Space

MIN_POSITIVE = 3  # liked papers (votes up and `like` examples) before anything is learned
MIN_NEGATIVE = 3  # rejected papers before a query match may be held back


@dataclass(frozen=True)
class Example:
    paper: Paper
    liked: bool
    how: str  # "you marked more like this" / "an example of topic X" / "you marked not for me"


class Verdict(NamedTuple):
    keep: bool
    relevance: float  # similarity to the liked minus to the rejected centroid
    because: Example | None  # the rated paper most like it (for a learned choice); None: the query decided


@dataclass(frozen=True)
class Verdicts:
    """One subscription's verdicts on a judging's papers, as arrays: scoring 1,000 subscriptions x 200
    papers makes no 200,000 objects, and a caller looks only at the papers it `considers`."""
    keep: NDArray[np.bool_]
    relevance: NDArray[np.float64]
    matched: NDArray[np.bool_]  # what the query (or a topic) selected
    because: dict[int, Example]  # paper index -> the rated paper most like it, for each learned choice

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: int) -> Verdict:
        return Verdict(bool(self.keep[index]), float(self.relevance[index]), self.because.get(index))

    def considered(self) -> list[int]:
        """The papers the query selected or the verdict keeps: every other one is simply not sent."""
        found: list[int] = np.flatnonzero(self.keep | self.matched).tolist()
        return found


def query_decides(matched: Sequence[bool]) -> Verdicts:
    """Verdicts of a subscription that learns nothing: the query's selection, as it is."""
    selected = np.asarray(matched, dtype=bool)
    return Verdicts(selected, np.zeros(len(selected)), selected, {})


@dataclass(frozen=True)
class Thresholds:
    hold: float  # a query match scoring below is held back (-inf: none is)
    include: float  # a paper the query missed scoring at least this is included (inf: none is)


NEVER = Thresholds(-math.inf, math.inf)


class Taste:
    """One subscription's examples in one space, ready to judge new papers."""

    def __init__(self, space: Space, examples: Sequence[Example], vectors: Sequence[Any]):
        self.space = space
        self.liked = [(e, v) for e, v in zip(examples, vectors, strict=True) if e.liked]
        self.rejected = [(e, v) for e, v in zip(examples, vectors, strict=True) if not e.liked]
        self.learns = len(self.liked) >= MIN_POSITIVE
        self.holds = self.learns and len(self.rejected) >= MIN_NEGATIVE
        sides = [self.liked, self.rejected] if self.holds else [self.liked] if self.learns else []
        totals = [space.total([v for _, v in side]) for side in sides]
        self.centroids = [space.centroid(total) for total in totals]
        self.thresholds = self._calibrate(totals) if self.learns else NEVER
        self._packed: dict[bool, Any] = {}  # liked or not -> that side's vectors, packed (when first needed)

    def packed(self, liked: bool) -> Any:
        """One side's vectors as `Space.nearest` takes them: packed once, compared at every judging."""
        if liked not in self._packed:
            self._packed[liked] = self.space.pack([v for _, v in (self.liked if liked else self.rejected)])
        return self._packed[liked]

    def _calibrate(self, totals: list[Any]) -> Thresholds:
        """Thresholds from the examples' leave-one-out scores (see the module's docstring)."""
        vectors = [v for _, v in self.liked] + [v for _, v in self.rejected]
        liked = np.array([True] * len(self.liked) + [False] * len(self.rejected))
        dots = self.space.similarities(vectors, totals).astype(np.float64)  # example . sum of a side's vectors
        scores = _left_out(dots[:, 0], liked)
        if self.holds:
            scores = scores - _left_out(dots[:, 1], ~liked)
        return Thresholds(_best_cut(scores, liked) if self.holds else -math.inf, _include_cut(scores, liked))

    def scores(self, similarities: Matrix) -> NDArray[np.float64]:
        """Predicted relevance from the papers' similarities to this taste's centroids (columns)."""
        sims = similarities.astype(np.float64)
        return sims[:, 0] - sims[:, 1] if self.holds else sims[:, 0]

    def judge(self, vectors: Sequence[Any], matched: Sequence[bool]) -> Verdicts:
        """A verdict per paper (`matched`: the query or a topic selected it)."""
        if not self.learns or not len(vectors):
            return query_decides(matched)
        return self.decide(self.space.batch(vectors), self.space.similarities(vectors, self.centroids), matched)

    def decide(self, batch: Any, similarities: Matrix, matched: Sequence[bool]) -> Verdicts:
        """`judge` given the papers (`Space.batch`) and their similarities to `centroids` (judge_all
        makes both once for many tastes)."""
        relevance = self.scores(similarities)
        was_matched = np.asarray(matched, dtype=bool)
        held = was_matched & (relevance < self.thresholds.hold)
        added = ~was_matched & (relevance >= self.thresholds.include)
        because: dict[int, Example] = {}
        for changed, liked in ((held, False), (added, True)):  # the rated paper most like each
            rows = np.flatnonzero(changed).tolist()
            if rows:
                side = self.liked if liked else self.rejected
                nearest = self.space.dots(batch, rows, self.packed(liked)).argmax(axis=1).tolist()
                because.update((k, side[j][0]) for k, j in zip(rows, nearest, strict=True))
        return Verdicts((was_matched & ~held) | added, relevance, was_matched, because)


def judge_all(space: Space, tastes: Sequence[Taste], vectors: Sequence[Any],
              matched: Sequence[Sequence[bool]]) -> list[Verdicts]:
    """Each taste's verdicts on the same papers, from one product of the papers with every centroid."""
    centroids = [c for t in tastes for c in t.centroids]
    similarities = space.similarities(vectors, centroids) if centroids and len(vectors) else None
    batch = space.batch(vectors) if similarities is not None else None
    result, column = [], 0
    for taste, own in zip(tastes, matched, strict=True):
        if not taste.learns or similarities is None:
            result.append(query_decides(own))
            continue
        width = len(taste.centroids)
        result.append(taste.decide(batch, similarities[:, column:column + width], own))
        column += width
    return result


def _left_out(dots: NDArray[np.float64], side: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Each example's cosine with the normalised sum of `side`'s vectors other than itself, from its dot
    product with the sum of all of them (`dots`; the vectors are normalised, so that sum's squared norm
    is the sum of its members' dots)."""
    own = np.where(side, 1.0, 0.0)
    norms = dots[side].sum() - 2 * own * dots + own
    result: NDArray[np.float64] = (dots - own) / np.sqrt(np.maximum(norms, 1e-12))
    return result


def _include_cut(scores: NDArray[np.float64], liked: NDArray[np.bool_]) -> float:
    """As high as the liked examples' median, and above every rejected one."""
    include = float(np.median(scores[liked]))
    return max(include, float(scores[~liked].max()) + 1e-6) if (~liked).any() else include


def _best_cut(scores: NDArray[np.float64], liked: NDArray[np.bool_]) -> float:
    """The threshold keeping the examples above it with the best F1; -inf unless it beats keeping all."""
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], np.cumsum(liked[order])
    kept = np.arange(1, len(ranked) + 1)
    f1 = 2 * hits / (kept + liked.sum())
    best = int(np.argmax(f1[::-1]))  # the last best: of equal F1, the cut that holds back the fewest
    best = len(f1) - 1 - best
    if best == len(f1) - 1 or f1[best] <= f1[-1]:
        return -math.inf
    return float((ranked[best] + ranked[best + 1]) / 2)  # midway to the first paper held back
