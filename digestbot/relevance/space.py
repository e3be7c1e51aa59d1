"""Representations of papers for learning: a vector per paper, and the cosines of many against many.

`LexicalSpace` (always available): TF-IDF over title and abstract (`matching.similar.Vectorizer`),
sparse dicts. `embed.EmbeddingSpace` (the `semantic` extra): sentence embeddings, dense. The model
(model.py) sees only this Protocol. `similarities` is one matrix product (numpy), whatever the number
of papers and of subscriptions' centroids: scoring 1,000 subscriptions is one call, not 1,000.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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

    def pack(self, vectors: Sequence[Any]) -> Any:
        """`vectors` (a taste's examples) in the form `nearest` compares with many batches of papers."""
        ...

    def batch(self, vectors: Sequence[Any]) -> Any:
        """The papers being judged, in the form `nearest` takes (made once per judging, for every taste)."""
        ...

    def dots(self, batch: Any, rows: Sequence[int] | None, packed: Any) -> Matrix:
        """The dot products of the batch's `rows` (None: all of them) with the packed vectors."""
        ...


CENTROID_TERMS = 200  # a centroid keeps its heaviest terms (its tail weighs little, and costs per term)


class LexicalSpace:
    """TF-IDF vectors; document frequencies from `corpus` (recent stored papers)."""

    name = "lexical"

    def __init__(self, corpus: Sequence[Paper]):
        self.vectorizer = Vectorizer(corpus)
        self.ids: dict[str, int] = {}  # term -> its number, for packed vectors (numbered as they come)

    def vectors(self, papers: Sequence[Paper]) -> list[dict[str, float]]:
        return [self.vectorizer.vector(p) for p in papers]

    def total(self, vectors: Sequence[dict[str, float]]) -> dict[str, float]:
        total: Counter[str] = Counter()
        for v in vectors:
            total.update(v)
        return dict(total)

    def centroid(self, total: dict[str, float]) -> TermWeights:
        # Numbered terms and weights, not a dict: judging puts thousands of centroids side by side, and
        # arrays go into one matrix by one numpy assignment (a dict would take a Python loop per term).
        top = Counter(total).most_common(CENTROID_TERMS)
        norm = sum(x * x for _, x in top) ** 0.5 or 1.0
        return TermWeights(np.fromiter((self.ids.setdefault(w, len(self.ids)) for w, _ in top), np.intp, len(top)),
                           np.fromiter((x / norm for _, x in top), np.float32, len(top)))

    def similarities(self, vectors: Sequence[dict[str, float]],
                     to: Sequence[dict[str, float]] | Sequence[TermWeights]) -> Matrix:
        # Only the terms of `vectors` can add to a cosine: they are the columns (a few thousand for a
        # day's papers), both sides dense over them, one product.
        weights = [t for t in to if isinstance(t, TermWeights)]
        if weights and len(weights) == len(to):  # centroids
            batch = self.batch(vectors)
            product: Matrix = np.matmul(batch.papers, _dense_weights(weights, batch).T)
            return product
        columns: dict[str, int] = {}
        for v in vectors:
            for term in v:
                columns.setdefault(term, len(columns))
        return _dense(vectors, columns) @ _dense([t for t in to if isinstance(t, dict)], columns).T

    def pack(self, vectors: Sequence[dict[str, float]]) -> PackedTerms:
        rows, ids, values = [], [], []
        for i, v in enumerate(vectors):
            for term, x in v.items():
                rows.append(i)
                ids.append(self.ids.setdefault(term, len(self.ids)))
                values.append(x)
        return PackedTerms(len(vectors), np.array(rows, dtype=np.intp), np.array(ids, dtype=np.intp),
                           np.array(values, dtype=np.float32))

    def batch(self, vectors: Sequence[dict[str, float]]) -> TermBatch:
        columns: dict[str, int] = {}
        for v in vectors:
            for term in v:
                columns.setdefault(term, len(columns))
        numbers = [self.ids.setdefault(term, len(self.ids)) for term in columns]  # the examples packed later share them
        column_of = np.full(len(self.ids), -1, dtype=np.intp)  # term number -> column (-1: not in the batch)
        column_of[numbers] = np.arange(len(columns))
        return TermBatch(_dense(vectors, columns), column_of)

    def dots(self, batch: TermBatch, rows: Sequence[int] | None, packed: PackedTerms) -> Matrix:
        # Only the packed vectors' terms that the batch has add to a dot product (numbers given after the
        # batch was made are of terms it lacks). Gather those columns of the papers, weight them, and sum
        # each packed vector's stretch (packed.rows is in order), GROUP vectors at a time: a few products
        # per term, never a dense matrix over every term of every vector.
        papers = batch.papers if rows is None else batch.papers[list(rows)]
        result = np.zeros((papers.shape[0], packed.count), dtype=np.float32)
        known = packed.ids < len(batch.column_of)
        columns = np.full(len(packed.ids), -1, dtype=np.intp)
        columns[known] = batch.column_of[packed.ids[known]]
        used = columns >= 0
        owners, columns, values = packed.rows[used], columns[used], packed.values[used]
        for first in range(0, packed.count, GROUP):
            lo, hi = np.searchsorted(owners, [first, first + GROUP])
            if lo == hi:
                continue
            group = owners[lo:hi] - first
            width = min(GROUP, packed.count - first)
            starts = np.minimum(np.searchsorted(group, np.arange(width)), hi - lo - 1)
            sums = np.add.reduceat(papers[:, columns[lo:hi]] * values[lo:hi], starts, axis=1)
            sums[:, np.bincount(group, minlength=width) == 0] = 0.0  # reduceat's value for an empty stretch
            result[:, first:first + width] = sums
        return result


GROUP = 256  # packed vectors per gather in LexicalSpace.dots: bounds its temporary to rows x their terms


@dataclass(frozen=True)
class TermWeights:
    """A centroid: its heaviest terms' numbers (LexicalSpace.ids) and weights, normalised."""
    ids: NDArray[np.intp]
    values: NDArray[np.float32]


def _dense_weights(weights: Sequence[TermWeights], batch: TermBatch) -> Matrix:
    """The centroids as rows over the batch's columns (terms no paper of the batch has add nothing)."""
    ids = np.concatenate([w.ids for w in weights])
    values = np.concatenate([w.values for w in weights])
    owners = np.repeat(np.arange(len(weights)), [len(w.ids) for w in weights])
    known = ids < len(batch.column_of)
    columns = np.full(len(ids), -1, dtype=np.intp)
    columns[known] = batch.column_of[ids[known]]
    used = columns >= 0
    dense = np.zeros((len(weights), batch.papers.shape[1]), dtype=np.float32)
    dense[owners[used], columns[used]] = values[used]
    return dense


@dataclass(frozen=True)
class PackedTerms:
    """Sparse vectors as three flat arrays (row, term number, weight): a taste's examples, made dense over
    any batch's terms by one numpy assignment instead of a Python loop per judging."""
    count: int
    rows: NDArray[np.intp]
    ids: NDArray[np.intp]
    values: NDArray[np.float32]


@dataclass(frozen=True)
class TermBatch:
    papers: Matrix  # the judged papers, dense over their own terms
    column_of: NDArray[np.intp]  # term number -> its column in `papers`, -1 when no paper has the term


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
