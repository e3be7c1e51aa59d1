"""Representations of papers for learning: a vector per paper, and the cosines of many against many.

`LexicalSpace` (always available): TF-IDF over title and abstract (`matching.similar.Vectorizer`),
sparse dicts. `embed.EmbeddingSpace` (the `semantic` extra): sentence embeddings, dense. The model
(model.py) sees only this Protocol. `similarities` is one matrix product (numpy), whatever the number
of papers and of subscriptions' centroids: scoring 1,000 subscriptions is one call, not 1,000.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..matching.similar import Vectorizer
from ..models import Paper

Matrix = NDArray[np.float32]


class Space(Protocol):
    name: str

    def vectors(self, papers: Sequence[Paper]) -> list[Any]:
        """One vector per paper, in order; normalised (the cosine is a dot product)."""
        ...

    def total(self, vectors: Sequence[Any]) -> Any:
        """The sum of `vectors` (not normalised)."""
        ...

    def centroid(self, total: Any) -> Any:
        """`total` (of `total`) normalised."""
        ...

    def similarities(self, vectors: Sequence[Any], to: Sequence[Any]) -> Matrix:
        """The dot product of vectors[i] and to[j] as rows i, columns j: their cosine when both are normalised."""
        ...


CENTROID_TERMS = 200  # a centroid keeps its heaviest terms (its tail weighs little, and costs per term)


class LexicalSpace:
    """TF-IDF vectors; document frequencies from `corpus` (recent stored papers)."""

    name = "lexical"

    def __init__(self, corpus: Sequence[Paper]):
        self.vectorizer = Vectorizer(corpus)

    def vectors(self, papers: Sequence[Paper]) -> list[dict[str, float]]:
        return [self.vectorizer.vector(p) for p in papers]

    def total(self, vectors: Sequence[dict[str, float]]) -> dict[str, float]:
        total: Counter[str] = Counter()
        for v in vectors:
            total.update(v)
        return dict(total)

    def centroid(self, total: dict[str, float]) -> dict[str, float]:
        top = dict(Counter(total).most_common(CENTROID_TERMS))
        norm = sum(x * x for x in top.values()) ** 0.5 or 1.0
        return {w: x / norm for w, x in top.items()}

    def similarities(self, vectors: Sequence[dict[str, float]], to: Sequence[dict[str, float]]) -> Matrix:
        # Only the terms of `vectors` can add to a cosine: they are the columns (a few thousand for a
        # day's papers), both sides dense over them, one product.
        columns: dict[str, int] = {}
        for v in vectors:
            for term in v:
                columns.setdefault(term, len(columns))
        return _dense(vectors, columns) @ _dense(to, columns).T


def _dense(vectors: Sequence[dict[str, float]], columns: dict[str, int]) -> Matrix:
    rows, cols, values = [], [], []
    for i, v in enumerate(vectors):
        for term, x in v.items():
            j = columns.get(term)
            if j is not None:
                rows.append(i)
                cols.append(j)
                values.append(x)
    dense = np.zeros((len(vectors), len(columns)), dtype=np.float32)
    dense[rows, cols] = values
    return dense
