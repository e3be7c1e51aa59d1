"""Match many interests against a batch of papers: compile, index, evaluate candidates, explain.

Every distinct query (a subscription's own or a topic's) becomes one *clause*, indexed by its
anchors in the inverted index (`index.py`); its functions (generated, `compile.py`) are compiled
from the query text when first needed, and its AST is not kept. Only the index's candidates are
evaluated: per paper, or in a large batch once over all its papers (bitsets, `batch.py`). The
explanation (hits and score) of each clause that holds is computed once per paper and shared by
every interest that has it as its only clause. `match_naive` evaluates everything, through the
general per-interest path and on whole documents, and must return the same result.
"""
from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

from digestbot.matching.batch import Batch, BatchPred, compile_batch
from digestbot.matching.compile import Explain, Pred, compile_explain, compile_node, document, explanation, unique
from digestbot.matching.index import Index, Rarity
from digestbot.matching.nodes import Doc
from digestbot.matching.query import parse_query
from digestbot.models import Match, Paper

BATCH_MIN = 300  # papers from which batch evaluation is not slower (100,000 subscriptions; at
# 10,000 from ~100): at 1,000 papers it takes ~30% less time (benchmarks/bench_matching.py)
_INTEREST, _MATCH = itemgetter(0), itemgetter(1)  # of (interest number, its Match) pairs
_HIT = itemgetter(0)  # of (hit, its weight) pairs
Plan = tuple[int | None, tuple[tuple[str, int], ...]]  # an interest's own clause (None: none), its topics'


class PaperMatcher(Protocol):
    """What papers are matched with: the query `Matcher`, or `similar.SimilarityMatcher` around one."""

    @property
    def per_paper(self) -> bool:
        """True: each paper's matches depend on that paper alone (match(a + b) == match(a) + match(b)), and
        matching a slice costs no more than its share, so a poll may match and record a slice of its papers
        at a time (pipeline.poll: memory bounded by the slice)."""
        ...

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        """Matches grouped by paper order, then interest order."""
        ...


@dataclass(frozen=True)
class Interest:
    id: str  # subscription id (slug)
    query: str = ""  # may be empty
    topics: tuple[tuple[str, str], ...] = ()  # (topic name, topic query), OR-ed with `query`


class Matcher:
    """Matches papers against many interests; parses every query up front (QuerySyntaxError).

    `sample`: papers like the ones to be matched (recent ones, say). Their word frequencies pick
    rarer anchors, which makes matching faster; the result never depends on them.
    """

    per_paper = True  # PaperMatcher.per_paper

    batch_min = BATCH_MIN  # tests set it to 1 or huge to hold either path to the naive loop

    def __init__(self, interests: Iterable[Interest], sample: Iterable[Paper] = ()):
        self._index = Index(Rarity(sample))
        self._texts: list[str] = []  # clause id -> its query as first written (parsed again on use)
        self._preds: list[Pred | None] = []  # compiled on first use: most clauses rarely are candidates
        self._ids: dict[str, int] = {}  # canonical query text -> clause id, so shared topics run once
        self._parsed: dict[str, int] = {}  # query as written -> clause id: a shared topic parses once
        self._names: list[str] = []
        self._plans = [self._plan(i) for i in interests]
        self._index.freeze()
        del self._ids, self._parsed  # building's alone: 50,000 queries' texts and canonical forms (~10 MB)
        # why a clause holds, per (clause, topic) "slot": a clause's own is its id, a topic's after
        self._slots: dict[tuple[int, str], int] = {}
        self._slot_of: list[tuple[int, str]] = []
        self._sole, self._users = self._interests_by_clause()
        slots = len(self._texts) + len(self._slot_of)
        self._explainers: list[Explain | None] = [None] * slots
        self._batch_preds: list[BatchPred | None] = [None] * len(self._texts)  # as _preds

    def _plan(self, interest: Interest) -> Plan:
        self._names.append(interest.id)
        topics = tuple((name, self._clause(q)) for name, q in interest.topics)
        blank = not interest.query.strip()
        return (None if blank and topics else self._clause(interest.query)), topics

    def _clause(self, query: str) -> int:
        """The clause id of `query`; a new one is indexed. Its AST is not kept: 100,000 queries'
        nodes would cost memory and a cyclic-GC walk of each of them in every full collection."""
        if query in self._parsed:
            return self._parsed[query]
        node = parse_query(query)
        key = "" if node is None else str(node)
        if key not in self._ids:
            self._ids[key] = len(self._texts)
            self._texts.append(query)
            self._preds.append(None)
            self._index.add(self._ids[key], node)
        self._parsed[query] = self._ids[key]
        return self._ids[key]

    def _interests_by_clause(self) -> tuple[list[tuple[tuple[int, str], ...]],
                                            list[tuple[tuple[int, tuple[int, ...]], ...]]]:
        """Clause id -> the interests whose only clause it is (their match is the clause's hits),
        and -> (explanation slot, interests) for the interests with topics that name it: their
        match is that clause's hits when it is the only one of theirs that holds."""
        sole: list[list[tuple[int, str]]] = [[] for _ in self._texts]
        named: dict[tuple[int, str | None], list[int]] = {}
        for n, (own, topics) in enumerate(self._plans):
            if own is not None and not topics:  # (without topics, an interest has its own clause)
                sole[own].append((n, self._names[n]))
                continue
            for topic, c in (list(topics) if own is None else [(None, own), *topics]):
                named.setdefault((c, topic), []).append(n)
        users: list[tuple[tuple[int, tuple[int, ...]], ...]] = [()] * len(self._texts)
        for (c, topic), interests in named.items():
            users[c] += ((self._slot(c, topic), tuple(interests)),)
        return [tuple(x) for x in sole], users  # tuples: untracked by the GC

    def candidates(self, doc: Doc) -> set[int]:
        """Clause ids that may hold for `doc` (see `Index`)."""
        return self._index.candidates(doc)

    def _pred(self, c: int) -> Pred:
        pred = self._preds[c]
        if pred is None:
            pred = self._preds[c] = compile_node(parse_query(self._texts[c]))
        return pred

    def _batch_pred(self, c: int) -> BatchPred:
        pred = self._batch_preds[c]
        if pred is None:
            pred = self._batch_preds[c] = compile_batch(parse_query(self._texts[c]), self._index)
        return pred

    def holding(self, papers: Sequence[Paper]) -> tuple[list[Doc], list[list[int]]]:
        """The papers' documents and, per paper, the clause ids that hold. A large batch evaluates
        each candidate clause once over all its papers (bitsets, `batch.py`): candidates are
        shared by many papers there. In a small one they rarely are, and a clause costs less on
        one paper than on a bitset."""
        if len(papers) < self.batch_min:
            docs = [self._index.document(paper) for paper in papers]
            return docs, [self._holding_one(doc) for doc in docs]
        batch = Batch(papers, self._index)
        found: list[list[int]] = [[] for _ in papers]
        preds, numbered = self._batch_preds, batch.bits
        for c in self._index.batch_candidates(numbered):
            bits = (preds[c] or self._batch_pred(c))(batch, numbered)
            while bits:  # each paper for which it holds
                i = bits.bit_length() - 1
                found[i].append(c)
                bits ^= 1 << i
        return batch.docs, found

    def _holding_one(self, doc: Doc) -> list[int]:
        preds = self._preds
        return [c for c in self._index.candidates(doc) if (preds[c] or self._pred(c))(doc)]

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        """Matches grouped by paper order, then interest order."""
        out: list[Match] = []
        with _cyclic_gc_paused():
            for paper, doc, holding in zip(papers, *self.holding(papers), strict=True):
                if holding:
                    self._matches(paper, doc, holding, out)
        return out

    def _matches(self, paper: Paper, doc: Doc, holding: list[int], out: list[Match]) -> None:
        """Append the matches of one paper, given the clauses that hold for it, in interest order."""
        bonus = _bonus(paper)
        sole, users, explainers, names = self._sole, self._users, self._explainers, self._names
        found: list[tuple[int, Match]] = []
        held: dict[int, tuple[int, Match]] = {}  # interests with topics
        several: set[int] = set()  # ... for which more than one clause holds
        scores: dict[float, float] = {}  # weight -> score: round() costs more than a look-up
        for c in holding:
            if sole[c]:  # one explanation serves all the interests this clause is alone in
                hits, weight, _ = (explainers[c] or self._compile_explainer(c))(doc)
                score = scores.get(weight) or scores.setdefault(weight, round(weight + bonus, 6))
                for n, name in sole[c]:
                    found.append((n, Match(name, paper, score, hits)))
            for slot, members in users[c]:
                hits, weight, _ = (explainers[slot] or self._compile_explainer(slot))(doc)
                score = scores.get(weight) or scores.setdefault(weight, round(weight + bonus, 6))
                for n in members:  # the usual case: one of its clauses holds, the match is its
                    if n in held:
                        several.add(n)
                    else:
                        held[n] = n, Match(names[n], paper, score, hits)
        if several:  # hits merged from several clauses, in the interest's order
            found += [pair for n, pair in held.items() if n not in several]
            merged = sorted(several)
            rest: list[Match] = []
            self._collect(paper, doc, merged, set(holding).__contains__, rest)
            found += zip(merged, rest, strict=True)  # one match each
        else:
            found += held.values()
        found.sort(key=_INTEREST)  # (each is there once): int keys sort faster than tuples
        out += map(_MATCH, found)

    def match_naive(self, papers: Sequence[Paper]) -> list[Match]:
        """Every interest against every paper, no index: the reference `match` must agree with."""
        out: list[Match] = []
        for paper in papers:
            doc = document(paper)
            self._collect(paper, doc, range(len(self._names)), self._holds_in(doc), out)
        return out

    def _holds_in(self, doc: Doc) -> Callable[[int], bool]:
        """Does clause `c` hold for `doc`?"""
        return lambda c: self._pred(c)(doc)

    def _collect(self, paper: Paper, doc: Doc, interests: Iterable[int], holds: Callable[[int], bool],
                 out: list[Match]) -> None:
        """Append a Match for each of `interests` one of whose clauses holds."""
        bonus = _bonus(paper)
        for n in interests:
            own, topics = self._plans[n]
            parts = [self._explainer(own, None)(doc)] if own is not None and holds(own) else []
            parts += [self._explainer(c, name)(doc) for name, c in topics if holds(c)]
            if len(parts) > 1:  # query hits first, then each topic's; a hit found twice counts once
                parts = [explanation(unique([p for _, _, found in parts for p in found], _HIT))]
            if parts:
                hits, weight, _ = parts[0]
                out.append(Match(self._names[n], paper, round(weight + bonus, 6), hits))

    def _slot(self, c: int, topic: str | None) -> int:
        """Where the explanation of clause `c` for `topic` (None: an interest's own query) is
        kept; a topic's slot is made while the interests are grouped (`_interests_by_clause`)."""
        if topic is None:
            return c
        if (c, topic) not in self._slots:
            self._slots[c, topic] = len(self._texts) + len(self._slot_of)
            self._slot_of.append((c, topic))
        return self._slots[c, topic]

    def _explainer(self, c: int, topic: str | None) -> Explain:
        slot = c if topic is None else self._slots[c, topic]
        return self._explainers[slot] or self._compile_explainer(slot)

    def _compile_explainer(self, slot: int) -> Explain:
        """Why a clause holds for a paper (compiled on first use: most clauses never match)."""
        c, topic = (slot, None) if slot < len(self._texts) else self._slot_of[slot - len(self._texts)]
        explain = self._explainers[slot] = compile_explain(parse_query(self._texts[c]), topic)
        return explain


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Matching allocates tens of thousands of objects that all survive (documents, matches, hits)
    and makes no reference cycles; the cyclic collector, triggered by the allocations, found nothing
    and cost 7-15% of matching 1,000 papers against 100,000 interests (A/B, `benchmarks/run.py
    matching`, three runs each: speedup 389-413 without the pause, 439-468 with it). Reference
    counting still frees. The pause is process-wide, so in the threaded daemon it also defers the
    other threads' cyclic collection for the length of one match (under a second); nested pauses from
    two threads are safe: only the one that found the collector enabled enables it again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _bonus(paper: Paper) -> float:
    return min(max(paper.upvotes or 0, 0), 1000) / 10000  # upvotes only break ties
