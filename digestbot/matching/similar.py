"""Interest by example: a topic with `like = ["2407.13168", ...]` matches papers similar to those.

Similarity is the cosine between TF-IDF vectors of title + abstract; document frequencies come from the
papers already stored (the most recent few thousand), so a word common in this installation's listings
weighs little. A topic's vector is the normalised centroid of its examples. `SimilarityMatcher` wraps
the query matcher and adds these topic hits, so queries and examples combine exactly like topics do.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..models import Hit, Match, Paper
from .matcher import PaperMatcher
from .nodes import tokenize

log = logging.getLogger(__name__)
_STOP = frozenset("""a an and are as at be been by can for from has have in into is it its of on or our
that the their these this those to was we were which with via using than then also such both over
""".split())
SIMILARITY_WEIGHT = 5.0  # a perfect lookalike scores like a strong title hit


@dataclass(frozen=True)
class SimilarTopic:
    name: str
    like: tuple[str, ...]  # paper keys (bare arXiv ids)
    min_similarity: float


def words(paper: Paper) -> Counter[str]:
    text = f"{paper.title} {paper.title} {paper.abstract}"  # the title counts twice: it is the gist
    return Counter(w for w in tokenize(text) if w not in _STOP and len(w) > 1)


class Vectorizer:
    def __init__(self, corpus: Iterable[Paper]):
        df: Counter[str] = Counter()
        n = 0
        for paper in corpus:
            df.update(words(paper).keys())
            n += 1
        self.n, self.df = n, df

    def vector(self, paper: Paper) -> dict[str, float]:
        counts = words(paper)
        weights = {w: (1 + math.log(c)) * (math.log((self.n + 1) / (self.df.get(w, 0) + 1)) + 1)
                   for w, c in counts.items()}
        return _normalise(weights)


def _normalise(weights: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in weights.values())) or 1.0
    return {w: v / norm for w, v in weights.items()}


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(w, 0.0) for w, v in a.items())


class SimilarityMatcher:
    """The query matcher plus `like` topics: same `match(papers)` contract."""

    per_paper = False  # each call reads the corpus and the examples again: match all of a poll's papers at once

    def __init__(self, base: PaperMatcher, topics: Sequence[SimilarTopic], users: dict[str, list[str]],
                 corpus: Callable[[], list[Paper]], examples: Callable[[list[str]], list[Paper]]):
        self.base, self.topics, self.users = base, list(topics), users  # users: topic -> subscription ids
        self.corpus, self.examples = corpus, examples

    def _centroids(self, vectorizer: Vectorizer) -> dict[str, dict[str, float]]:
        centroids = {}
        for topic in self.topics:
            found = self.examples(list(topic.like))
            missing = set(topic.like) - {p.key for p in found}
            if missing:
                log.warning("topic %s: example papers %s are not in the database yet; they count once a "
                            "source lists them", topic.name, ", ".join(sorted(missing)))
            total: Counter[str] = Counter()
            for paper in found:
                total.update(vectorizer.vector(paper))
            if total:
                centroids[topic.name] = _normalise(dict(total))
        return centroids

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        matches = self.base.match(papers)
        if not papers or not self.topics:
            return matches
        vectorizer = Vectorizer(self.corpus())
        centroids = self._centroids(vectorizer)
        by_pair = {(m.subscription_id, m.paper.key): m for m in matches}
        limits = {t.name: t.min_similarity for t in self.topics}
        for paper in papers:
            vector = vectorizer.vector(paper)
            for name, centroid in centroids.items():
                similarity = cosine(vector, centroid)
                if similarity < limits[name]:
                    continue
                for sub in self.users.get(name, []):
                    self._add(by_pair, matches, sub, paper, name, similarity)
        return matches

    @staticmethod
    def _add(by_pair: dict[tuple[str, str], Match], matches: list[Match], sub: str, paper: Paper, topic: str,
             similarity: float) -> None:
        hit = Hit(topic, "topic", topic)
        match = by_pair.get((sub, paper.key))
        if match is None:
            match = Match(sub, paper, 0.0, ())
            by_pair[(sub, paper.key)] = match
            matches.append(match)
        if hit not in match.hits:
            match.hits = (*match.hits, hit)
            match.score += SIMILARITY_WEIGHT * similarity
