"""Match many interests against a batch of papers through an inverted index of anchor words.

Every distinct query (a subscription's own query or a topic's) becomes one *clause*: its AST, a
compiled closure, and an anchor set — words of which any paper satisfying the clause must contain
at least one. The index maps each anchor to the clauses it anchors; a clause with no anchor
(only NOT, only upvotes, blank) is evaluated for every paper. Each paper is tokenised once, its
words look up candidate clauses, and only those are evaluated. `match_naive` evaluates everything
and must return the same result: the index only ever skips clauses that cannot hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, combinations
from math import prod
from typing import Callable, Iterable, Sequence

from digestbot.matching.query import (
    COMPARE, GROUP, TEXT, UPVOTES, And, Doc, HitList, Node, Not, Or, Phrase, Prefix, Term,
    Upvotes, parse_query, tokenize,
)
from digestbot.models import Hit, Match, Paper

Pred = Callable[[Doc], bool]
_Hits = tuple[dict[Hit, float], tuple[Hit, ...], float]  # hit -> weight, the hits, their sum
ALL = UPVOTES + 1  # document[ALL]: every word of the paper, for the index look-up
_PREFIX_KEY = 3  # prefixes are indexed by their first 3 letters, resolved against the paper's words
# Frequent words in paper titles and abstracts: poor anchors, whatever their length.
_COMMON = frozenset("""a an and are as at be by can for from has have in is it its of on or our
that the their this to we which with via using based towards model models language large learning
data method methods approach results performance paper propose proposed show task tasks training
neural network networks deep new study framework system systems analysis through efficient
""".split())


@dataclass(frozen=True)
class Interest:
    id: str  # subscription id (slug)
    query: str = ""  # may be empty
    topics: tuple[tuple[str, str], ...] = ()  # (topic name, topic query), OR-ed with `query`


def document(paper: Paper) -> tuple:
    """Tokenise a paper once into the tuple layout the nodes and closures read (see query.py)."""
    title, abstract = tokenize(paper.title), tokenize(paper.abstract)
    authors = [tokenize(a) for a in paper.authors]
    keywords = [tokenize(k) for k in paper.ai_keywords]
    sets = (set(title), set(abstract), set(chain.from_iterable(authors)),
            set(chain.from_iterable(keywords)))
    texts = (_joined([title]), _joined([abstract]), _joined(authors), _joined(keywords))
    text_words = sets[0] | sets[1]
    return (*sets, text_words, *texts, texts[0] + "|" + texts[1], paper.upvotes or 0,
            text_words.union(sets[2], sets[3]))


def _joined(items: list[list[str]]) -> str:
    # " a b | c d ": a phrase needle " b c " cannot span two authors or two keywords.
    return " " + " | ".join(" ".join(words) for words in items) + " "


def compile_node(node: Node | None) -> Pred:
    """A closure equivalent to `node.evaluate`, without attribute look-ups or dispatch per call."""
    if node is None:
        return lambda d: True
    kind = type(node)
    if kind is Term:
        word, g = node.word, GROUP[node.group]
        return lambda d: word in d[g]
    if kind is Phrase:  # the cheap set test rejects most papers before the substring search
        key, needle, g = rarest(node.words), node.needle, GROUP[node.group]
        return lambda d: key in d[g] and needle in d[TEXT + g]
    if kind is Prefix:
        needle, t = f" {node.stem}", TEXT + GROUP[node.group]
        return lambda d: needle in d[t]
    if kind is Upvotes:
        cmp, value = COMPARE[node.op], node.value
        return lambda d: cmp(d[UPVOTES], value)
    if kind is Not:
        inner = compile_node(node.child)
        return lambda d: not inner(d)
    return _compile_junction(node)  # type: ignore[arg-type]


def _compile_junction(node: And | Or) -> Pred:
    """AND/OR: plain terms of one field group fold into one set operation, tried first."""
    words: dict[int, set[str]] = {}
    rest: list[Node] = []
    for child in node.children:
        if type(child) is Term:
            words.setdefault(GROUP[child.group], set()).add(child.word)
        else:
            rest.append(child)
    rest.sort(key=lambda c: type(c) in (Not, Upvotes))  # negations rarely decide: last
    if type(node) is And:
        preds = [_all_in(frozenset(w), g) for g, w in words.items()]
        return _chain(preds + [compile_node(c) for c in rest], all_=True)
    preds = [_any_in(frozenset(w), g) for g, w in words.items()]
    return _chain(preds + [compile_node(c) for c in rest], all_=False)


def _all_in(words: frozenset[str], g: int) -> Pred:
    if len(words) == 1:
        (word,) = words
        return lambda d: word in d[g]
    return lambda d: words <= d[g]


def _any_in(words: frozenset[str], g: int) -> Pred:
    disjoint = words.isdisjoint
    return lambda d: not disjoint(d[g])


def _chain(preds: list[Pred], all_: bool) -> Pred:
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        a, b = preds
        return (lambda d: a(d) and b(d)) if all_ else (lambda d: a(d) or b(d))
    if all_:
        return lambda d: all(p(d) for p in preds)
    return lambda d: any(p(d) for p in preds)


def commonness(key: str) -> float:
    """A guess at the share of papers having `key`, made before any paper is seen: longer is rarer."""
    if key.endswith("*"):
        return 0.5  # a 3-letter prefix matches many words
    return 1.0 if key in _COMMON else 1.0 / len(key)


def rarest(words: Iterable[str]) -> str:
    return min(words, key=commonness)


Anchors = frozenset[tuple[str, ...]]  # a paper can match only if it has every key of one tuple


def anchors(node: Node | None) -> Anchors | None:
    """Key tuples (1 or 2 words, "abc*" for a prefix) of which a matching paper has one; None: none."""
    kind = type(node)
    if kind is Term:
        return frozenset([(node.word,)])  # type: ignore[union-attr]
    if kind is Phrase:
        return frozenset([_rarest_two(node.words)])  # type: ignore[union-attr]
    if kind is Prefix:
        return frozenset([(node.stem[:_PREFIX_KEY] + "*",)])  # type: ignore[union-attr]
    if kind is Or:  # any child may hold: all of them must be anchored
        sets = [anchors(c) for c in node.children]  # type: ignore[union-attr]
        return None if None in sets else frozenset().union(*sets)  # type: ignore[arg-type]
    if kind is And:  # every child holds: one child's anchors do, two children's combined do better
        sets = [a for c in node.children if (a := anchors(c)) is not None]  # type: ignore[union-attr]
        pairs = [frozenset(_rarest_two(x + y) for x in a for y in b)
                 for a, b in combinations(sets, 2) if len(a) * len(b) <= 16]
        return min(sets + pairs, key=_cost, default=None)
    return None  # NOT, upvotes, blank


def _rarest_two(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(keys), key=lambda k: (commonness(k), k))[:2])


def _cost(anchors: Anchors) -> float:
    return sum(prod(map(commonness, keys)) for keys in anchors)


class Matcher:
    """Matches papers against many interests; parses every query up front (QuerySyntaxError)."""

    def __init__(self, interests: Iterable[Interest]):
        self.interests = list(interests)
        self._nodes: list[Node | None] = []
        self._preds: list[Pred] = []
        self._ids: dict[str, int] = {}  # canonical query text -> clause id, so shared topics run once
        self._plans = [self._plan(i) for i in self.interests]
        self._users: list[list[int]] = [[] for _ in self._nodes]  # clause id -> interest indexes
        for n, (own, topics) in enumerate(self._plans):
            clauses = [c for _, c in topics] if own is None else [own] + [c for _, c in topics]
            for c in dict.fromkeys(clauses):  # once per interest, however often it names a clause
                self._users[c].append(n)
        self._build_index()

    def _plan(self, interest: Interest) -> tuple[int | None, tuple[tuple[str, int], ...]]:
        topics = tuple((name, self._clause(q)) for name, q in interest.topics)
        blank = not interest.query.strip()
        return (None if blank and topics else self._clause(interest.query)), topics

    def _clause(self, query: str) -> int:
        node = parse_query(query)
        key = "" if node is None else str(node)
        if key not in self._ids:
            self._ids[key] = len(self._nodes)
            self._nodes.append(node)
            self._preds.append(compile_node(node))
        return self._ids[key]

    def _build_index(self) -> None:
        # A prefix key "abc*" is looked up as "abc" among the paper's words and their first letters;
        # a word "abc" is then also "present" when a word starts with it: a harmless extra candidate.
        self._single: dict[str, list[int]] = {}
        self._pairs: dict[str, dict[str, list[int]]] = {}  # rarer key -> other key -> clauses
        self._always: list[int] = []
        lengths: set[int] = set()
        for c, node in enumerate(self._nodes):
            found = anchors(node)
            if found is None:
                self._always.append(c)
            for keys in found or ():
                lengths.update(len(k) - 1 for k in keys if k.endswith("*"))
                first, *rest = (k.rstrip("*") for k in keys)
                if rest:
                    self._pairs.setdefault(first, {}).setdefault(rest[0], []).append(c)
                else:
                    self._single.setdefault(first, []).append(c)
        self._lengths = sorted(lengths)

    def candidates(self, doc: Doc) -> set[int]:
        """Clause ids that may hold for `doc`: those whose anchor keys it has, and the unanchored."""
        keys, found = doc[ALL], set(self._always)
        if self._lengths:
            keys = keys.union(*[{w[:n] for w in keys} for n in self._lengths])
        single, pairs = self._single, self._pairs
        for key in single.keys() & keys:
            found.update(single[key])
        for key in pairs.keys() & keys:
            second = pairs[key]
            for other in second.keys() & keys:
                found.update(second[other])
        return found

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        """Matches grouped by paper order, then interest order."""
        out: list[Match] = []
        preds, users = self._preds, self._users
        for paper in papers:
            doc = document(paper)
            holding = {c for c in self.candidates(doc) if preds[c](doc)}
            cache: dict[tuple[int, str | None], _Hits] = {}
            for n in sorted(set().union(*(users[c] for c in holding))):
                match = self._match(n, paper, doc, holding.__contains__, cache)
                if match is not None:
                    out.append(match)
        return out

    def match_naive(self, papers: Sequence[Paper]) -> list[Match]:
        """Every interest against every paper, no index: the reference `match` must agree with."""
        out: list[Match] = []
        for paper in papers:
            doc = document(paper)
            cache: dict[tuple[int, str | None], _Hits] = {}
            for n in range(len(self.interests)):
                match = self._match(n, paper, doc, lambda c: self._preds[c](doc), cache)
                if match is not None:
                    out.append(match)
        return out

    def _match(self, n: int, paper: Paper, doc: Doc, holds: Callable[[int], bool],
               cache: dict[tuple[int, str | None], _Hits]) -> Match | None:
        own, topics = self._plans[n]
        parts = [self._hits(own, None, doc, cache)] if own is not None and holds(own) else []
        parts += [self._hits(c, name, doc, cache) for name, c in topics if holds(c)]
        if not parts:
            return None
        if len(parts) == 1:
            hits, score = parts[0][1:]
        else:  # query hits first, then each topic's; a hit found twice counts once
            merged: dict[Hit, float] = {}
            for found, _, _ in parts:
                for hit, weight in found.items():
                    merged.setdefault(hit, weight)
            hits, score = tuple(merged), sum(merged.values())
        score += min(max(paper.upvotes or 0, 0), 1000) / 10000  # upvotes only break ties
        return Match(self.interests[n].id, paper, round(score, 6), hits)

    def _hits(self, c: int, topic: str | None, doc: Doc,
              cache: dict[tuple[int, str | None], _Hits]) -> _Hits:
        """The hits of clause `c` (which holds) for this paper, computed once per paper."""
        if (c, topic) not in cache:
            found: dict[Hit, float] = {} if topic is None else {Hit(topic, "topic", topic): 0.0}
            raw: HitList = []
            node = self._nodes[c]
            if node is not None:
                node.hits(doc, raw)
            for text, field, weight in raw:
                found.setdefault(Hit(text, field, topic), weight)
            cache[c, topic] = (found, tuple(found), sum(found.values()))
        return cache[c, topic]
