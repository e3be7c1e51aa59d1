"""Representations of papers for learning: a vector per paper and the cosine between two.

`LexicalSpace` (always available): TF-IDF over title and abstract (`matching.similar.Vectorizer`),
sparse dicts. `embed.EmbeddingSpace` (the `semantic` extra): sentence embeddings, dense. The model
(model.py) sees only this Protocol.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from ..matching.similar import Vectorizer, cosine
from ..models import Paper


class Space(Protocol):
    name: str

    def vectors(self, papers: Sequence[Paper]) -> list[Any]:
        """One vector per paper, in order; normalised (the cosine is a dot product)."""
        ...

    def centroid(self, vectors: Sequence[Any]) -> Any:
        """The normalised mean of `vectors` (not empty)."""
        ...

    def similarities(self, vectors: Sequence[Any], to: Sequence[Any]) -> list[list[float]]:
        """cosine(vectors[i], to[j]) as rows i, columns j."""
        ...


CENTROID_TERMS = 80  # a centroid keeps its heaviest terms: scoring costs per term, the tail weighs little


class LexicalSpace:
    """TF-IDF vectors; document frequencies from `corpus` (recent stored papers)."""

    name = "lexical"

    def __init__(self, corpus: Sequence[Paper]):
        self.vectorizer = Vectorizer(corpus)

    def vectors(self, papers: Sequence[Paper]) -> list[dict[str, float]]:
        return [self.vectorizer.vector(p) for p in papers]

    def centroid(self, vectors: Sequence[dict[str, float]]) -> dict[str, float]:
        total: Counter[str] = Counter()
        for v in vectors:
            total.update(v)
        top = dict(total.most_common(CENTROID_TERMS))
        norm = sum(x * x for x in top.values()) ** 0.5 or 1.0
        return {w: x / norm for w, x in top.items()}

    def similarities(self, vectors: Sequence[dict[str, float]], to: Sequence[dict[str, float]]) -> list[list[float]]:
        return [[cosine(v, t) for t in to] for v in vectors]
