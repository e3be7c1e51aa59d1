"""The inverted index: which clauses a paper can possibly satisfy, without evaluating them.

A clause's *anchors* are tuples of one or two keys such that a paper satisfying the clause has
every key of at least one tuple. A key is `(where, what)`, and a paper has it when
`what in view[where]`: a word in a word set (title, author, keyword, text, or the first letters of
text words) or a needle in a text string (a phrase, a prefix). Each tuple starts with a set key,
the rarest one (by a sample's word frequencies), which the index is keyed by; the second key is
looked up in a nested table, so a paper meets only postings whose both keys it has. Clauses
without anchors (only NOT, only upvotes, blank) are candidates for every paper. The index only
ever skips clauses that cannot hold.
"""
from __future__ import annotations

from collections import Counter
from itertools import combinations
from math import inf, prod
from typing import Callable, Iterable

from digestbot.matching.compile import SET_OF, Key, document, needle_key
from digestbot.matching.nodes import GROUP, UPVOTES, And, Doc, Node, Or, Phrase, Prefix, Term
from digestbot.models import Paper

Anchors = frozenset[tuple[Key, ...]]  # a paper can match only if it has every key of one tuple
FIRST = UPVOTES + 1  # view[FIRST]: first letters of the title/abstract words (for prefixes)
_SETS = frozenset([GROUP["title"], GROUP["author"], GROUP["keyword"], GROUP["text"], FIRST])
_CHECK_COST = {GROUP["title"]: 0, GROUP["author"]: 0, GROUP["keyword"]: 0, GROUP["text"]: 0, FIRST: 1}
_FIRST_LETTERS = 4  # prefixes are indexed by (up to) their first 4 letters
# Without a sample of papers, a guess: frequent words of abstracts are poor anchors.
_COMMON = frozenset("""a an and are as at be by can for from has have in is it its of on or our
that the their this to we which with via using based towards model models language large learning
data method methods approach results performance paper propose proposed show task tasks training
neural network networks deep new study framework system systems analysis through efficient
significantly computational information generation representation optimization experiments
""".split())


class Rarity:
    """How common a key is among papers: from a sample's document frequencies, else a guess."""

    def __init__(self, sample: Iterable[Paper] = ()):
        self.df: Counter[Key] = Counter()
        self.n = 0
        for paper in sample:
            doc = document(paper)
            for where in _SETS - {FIRST}:
                self.df.update((where, w) for w in doc[where])
            self.df.update({(FIRST, w[:n]) for w in doc[GROUP["text"]]
                            for n in range(1, _FIRST_LETTERS + 1)})
            self.n += 1

    def __call__(self, key: Key) -> float:
        where, what = key
        if where not in _SETS:  # a needle: a phrase is rarer than its words, a prefix than its letters
            if what.endswith(" "):
                return 0.5 * prod(self((GROUP["text"], w)) for w in what.split())
            return 0.8 * self((FIRST, what[1:_FIRST_LETTERS + 1]))
        if self.n:
            return (self.df[key] + 0.5) / (self.n + 1)
        if where == FIRST:
            return 0.5 / len(what)
        factor = {GROUP["title"]: 0.2, GROUP["author"]: 0.01, GROUP["keyword"]: 0.5}.get(where, 1)
        return factor * (1.0 if what in _COMMON else 1.0 / len(what))


def anchors(node: Node | None, rarity: Callable[[Key], float] = Rarity()) -> Anchors | None:
    """Key tuples one of which a paper satisfying `node` has all of; None: there are none."""
    kind = type(node)
    if kind is Term or kind is Phrase or kind is Prefix:
        return frozenset([_best(_leaf_keys(node), rarity)])  # type: ignore[arg-type]
    if kind is Or:  # any child may hold: every child must be anchored
        sets = [anchors(c, rarity) for c in node.children]  # type: ignore[union-attr]
        return None if None in sets else frozenset().union(*sets)  # type: ignore[arg-type]
    if kind is And:  # every child holds: one child's anchors do; two children's combined do better
        sets = [a for c in node.children if (a := anchors(c, rarity)) is not None]  # type: ignore[union-attr]
        pairs = [frozenset(_best(x + y, rarity) for x in a for y in b)
                 for a, b in combinations(sets, 2) if len(a) * len(b) <= 16]
        return min(sets + pairs, key=lambda a: sum(_cost(t, rarity) for t in a), default=None)
    return None  # NOT, upvotes, blank


def _leaf_keys(node: Term | Phrase | Prefix) -> list[Key]:
    """Keys a paper has whenever `node` holds in it (all of them)."""
    keys = [needle_key(node)] if type(node) is not Term or node.group == "abstract" else []
    if type(node) is Prefix:  # first letters are only taken from title/abstract words
        if node.group in ("text", "title", "abstract"):
            keys.append((FIRST, node.stem[:_FIRST_LETTERS]))
        return keys
    words = node.words if type(node) is Phrase else (node.word,)  # type: ignore[union-attr]
    return keys + [(SET_OF[node.group], w) for w in words]


def _best(keys: Iterable[Key], rarity: Callable[[Key], float]) -> tuple[Key, ...]:
    """The rarest set key (the index is keyed by set keys), then the second key to check.

    The second is checked for every paper having the first: a word-set look-up is preferred to
    first letters (a set built per paper), and both to a substring search (a needle, ~3 µs).
    """
    ranked = sorted(set(keys), key=lambda k: (rarity(k), k))
    first = next((k for k in ranked if k[0] in _SETS), ranked[0])
    rest = sorted((k for k in ranked if k != first), key=lambda k: _CHECK_COST.get(k[0], 2))
    return (first, rest[0]) if rest else (first,)


def _cost(keys: tuple[Key, ...], rarity: Callable[[Key], float]) -> float:
    return prod(map(rarity, keys)) if keys[0][0] in _SETS else inf  # no set key: not indexable




Postings = dict[str, dict[str, list[int]]]  # first key's what -> second key's what ("" none) -> clauses


class Index:
    """Clause ids by anchor keys; `candidates(doc)` are those a paper may satisfy."""

    def __init__(self, nodes: Iterable[Node | None], rarity: Callable[[Key], float]):
        # One table per (where of the first key, where of the second key, None if there is none).
        tables: dict[tuple[int, int | None], Postings] = {}
        self.always: list[int] = []
        lengths: set[int] = set()
        for c, node in enumerate(nodes):
            found = anchors(node, rarity)
            if found is None or any(keys[0][0] not in _SETS for keys in found):
                self.always.append(c)
                continue
            for keys in found:
                lengths.update(len(what) for where, what in keys if where == FIRST)
                (where, what), (at, other) = keys[0], (keys[1] if len(keys) > 1 else (None, ""))
                table = tables.setdefault((where, at), {}).setdefault(what, {})
                table.setdefault(other, []).append(c)
        self.lengths = sorted(lengths)
        self.single = [(where, {w: s[""] for w, s in p.items()})
                       for (where, at), p in tables.items() if at is None]
        self.paired = [(where, at, p) for (where, at), p in tables.items() if at is not None]

    def candidates(self, doc: Doc) -> set[int]:
        """Clause ids that may hold for `doc`: those whose anchor keys it has, and the unanchored."""
        view = doc
        if self.lengths:  # the first letters of its words, for prefixes
            text, lengths = doc[GROUP["text"]], self.lengths
            view = (*doc, {w[:n] for n in lengths for w in text})
        found = set(self.always)
        for where, postings in self.single:
            for what in postings.keys() & view[where]:  # C-level: iterates the smaller side
                found.update(postings[what])
        for where, at, postings in self.paired:
            second = view[at]
            for what in postings.keys() & view[where]:
                seconds = postings[what]
                if at in _SETS:  # only the postings whose second key it has
                    for other in seconds.keys() & second:
                        found.update(seconds[other])
                else:  # a needle: a substring test each
                    for other, clauses in seconds.items():
                        if other in second:
                            found.update(clauses)
        return found
