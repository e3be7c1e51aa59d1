"""Match many interests against a batch of papers through an inverted index of anchor keys.

Every distinct query (a subscription's own or a topic's) becomes one *clause*: its AST, a compiled
closure, and its anchors — tuples of one or two keys, such that a paper satisfying the clause has
every key of at least one tuple. A key is `(where, what)`, and a paper has it when
`what in view[where]`: a word in a word set (title, author, keyword, text, or the first letters of
text words) or a needle in a text string (a phrase, a prefix). Each tuple starts with a set key,
which the index is keyed by. Per paper, the index yields the clauses whose first key the paper
has and whose second key it passes (one `in` test per posting); only those are evaluated; clauses without anchors (only NOT,
only upvotes, blank) are evaluated for every paper. `match_naive` evaluates everything and must
return the same result: the index only ever skips clauses that cannot hold.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import chain, combinations
from math import inf, prod
from typing import Callable, Iterable, Sequence

from digestbot.matching.query import (
    COMPARE, GROUP, SEARCHED, TEXT, UPVOTES, WEIGHTS, And, Doc, Node, Not, Or, Phrase, Prefix,
    Term, Upvotes, parse_query, tokenize,
)
from digestbot.models import Hit, Match, Paper

Pred = Callable[[Doc], bool]
Key = tuple[int, str]  # (where, what): the paper has it when `what in view[where]`
Anchors = frozenset[tuple[Key, ...]]  # a paper can match only if it has every key of one tuple
_Hits = tuple[list[tuple[Hit, float]], tuple[Hit, ...], float]  # (hit, weight)s, hits, their sum
FIRST = UPVOTES + 1  # view[FIRST]: first letters of the title/abstract words (for prefixes)
_SETS = frozenset([GROUP["title"], GROUP["author"], GROUP["keyword"], GROUP["text"], FIRST])
_CHECK_COST = {GROUP["title"]: 0, GROUP["author"]: 0, GROUP["keyword"]: 0, GROUP["text"]: 0, FIRST: 1}
_FIRST_LETTERS = 4  # prefixes are indexed by (up to) their first 4 letters
_SET_OF = {"title": 0, "abstract": 4, "author": 2, "keyword": 3, "text": 4}  # a set holding its words
# Without a sample of papers, a guess: frequent words of abstracts are poor anchors.
_COMMON = frozenset("""a an and are as at be by can for from has have in is it its of on or our
that the their this to we which with via using based towards model models language large learning
data method methods approach results performance paper propose proposed show task tasks training
neural network networks deep new study framework system systems analysis through efficient
significantly computational information generation representation optimization experiments
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
    text = set(abstract)
    text.update(title)
    texts = (_joined([title]), _joined([abstract]), _joined(authors), _joined(keywords))
    return (set(title), None, set(chain.from_iterable(authors)), set(chain.from_iterable(keywords)),
            text, *texts, texts[0] + "|" + texts[1], paper.upvotes or 0)


def _joined(items: list[list[str]]) -> str:
    # " a b | c d ": a phrase needle " b c " cannot span two authors or two keywords.
    return " " + " | ".join(" ".join(words) for words in items) + " "


def compile_node(node: Node | None) -> Pred:
    """A closure equivalent to `node.evaluate`, without attribute look-ups or dispatch per call."""
    kind = type(node)
    if node is None:
        return lambda d: True
    if kind is Term and node.group != "abstract":  # type: ignore[union-attr]
        word, g = node.word, GROUP[node.group]  # type: ignore[union-attr]
        return lambda d: word in d[g]
    if kind is Prefix:
        t, needle = _needle(node)  # type: ignore[arg-type]
        return lambda d: needle in d[t]
    if kind is Term or kind is Phrase:  # a set test first rejects most papers cheaply
        (t, needle), s = _needle(node), _SET_OF[node.group]  # type: ignore[arg-type, union-attr]
        word = max(node.words, key=len) if kind is Phrase else node.word  # type: ignore[union-attr]
        return lambda d: word in d[s] and needle in d[t]
    if kind is Upvotes:
        cmp, value = COMPARE[node.op], node.value  # type: ignore[union-attr]
        return lambda d: cmp(d[UPVOTES], value)
    if kind is Not:
        inner = compile_node(node.child)  # type: ignore[union-attr]
        return lambda d: not inner(d)
    return _compile_junction(node)  # type: ignore[arg-type]


def _needle(node: Term | Phrase | Prefix) -> Key:
    """The test key that decides the leaf: a substring of its field's text string."""
    where = TEXT + GROUP[node.group]
    if type(node) is Prefix:
        return where, " " + node.stem
    return where, node.needle if type(node) is Phrase else f" {node.word} "  # type: ignore[union-attr]


def _compile_junction(node: And | Or) -> Pred:
    """AND/OR: plain terms of one word set fold into one set operation; cheap tests go first."""
    words: dict[int, set[str]] = {}
    rest: list[Node] = []
    for child in node.children:
        if type(child) is Term and child.group != "abstract":
            words.setdefault(GROUP[child.group], set()).add(child.word)
        else:
            rest.append(child)
    rest.sort(key=_effort)
    if type(node) is And:
        preds = [_all_in(frozenset(w), g) for g, w in words.items()]
        return _chain(preds + [compile_node(c) for c in rest], all_=True)
    preds = [_any_in(frozenset(w), g) for g, w in words.items()]
    return _chain(preds + [compile_node(c) for c in rest], all_=False)


def _effort(node: Node) -> int:
    """Rough cost of evaluating `node`: set look-ups 1, substring searches 3."""
    if type(node) in (And, Or):
        return 1 + sum(map(_effort, node.children))  # type: ignore[union-attr]
    if type(node) is Not:
        return _effort(node.child)
    return 1 if type(node) is Upvotes or (type(node) is Term and node.group != "abstract") else 3


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


def compile_hits(node: Node | None, topic: str | None) -> Callable[[Doc], list[tuple[Hit, float]]]:
    """A closure equivalent to `node.hits` where `node` holds: (Hit, weight) pairs, each once."""
    head = [(Hit(topic, "topic", topic), 0.0)] if topic is not None else []
    probes = _static_probes(node, topic)
    if probes is not None:  # no OR below: which leaves count is known, only the fields vary
        probes = _unique(probes, lambda p: p[1])
        return lambda d: head + [(hit, weight) for check, hit, weight in probes if check(d)]
    collect = _collector(node, topic)
    return lambda d: head + _unique(collect(d), lambda p: p[0])


def _unique(items: list, hit_of: Callable) -> list:
    """The first item for each distinct hit. (A Hit's own hash runs Python code: use a tuple.)"""
    first: dict = {}
    for item in items:
        hit = hit_of(item)
        first.setdefault((hit.text, hit.field, hit.topic), item)
    return list(first.values())


def _collector(node: Node | None, topic: str | None) -> Callable[[Doc], list[tuple[Hit, float]]]:
    probes = _static_probes(node, topic)
    if probes is not None:
        return lambda d: [(hit, weight) for check, hit, weight in probes if check(d)]
    if type(node) is And:
        parts = [_collector(c, topic) for c in node.children]
        return lambda d: [x for part in parts for x in part(d)]
    branches = [(compile_node(c), _collector(c, topic)) for c in node.children]  # type: ignore[union-attr]
    return lambda d: [x for holds, part in branches if holds(d) for x in part(d)]  # OR: true ones


def _static_probes(node: Node | None, topic: str | None) -> list[tuple[Pred, Hit, float]] | None:
    """(is it in this field?, its Hit, weight) for every leaf that counts; None if OR decides."""
    kind = type(node)
    if node is None or kind is Not or kind is Upvotes:
        return []
    if kind is And:
        parts = [_static_probes(c, topic) for c in node.children]  # type: ignore[union-attr]
        return None if None in parts else [p for part in parts for p in part]  # type: ignore[union-attr]
    if kind is Or:
        return None
    return [(_probe(node, field), Hit(node.label, field, topic), WEIGHTS[field] * node.bonus)  # type: ignore[union-attr]
            for field in SEARCHED[node.group]]  # type: ignore[union-attr]


def _probe(node: Term | Phrase | Prefix, field: str) -> Pred:
    """A closure equivalent to `node.present(doc, field)`."""
    if type(node) is not Term:
        needle, t = node.needle, TEXT + GROUP[field]  # type: ignore[union-attr]
        return lambda d: needle in d[t]
    word, title, text = node.word, GROUP["title"], GROUP["text"]
    if field == "abstract":  # as has_word: only a title word needs the string search
        needle, t = f" {word} ", TEXT + GROUP[field]
        return lambda d: word in d[text] and (word not in d[title] or needle in d[t])
    g = GROUP[field]
    return lambda d: word in d[g]


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
    keys = [_needle(node)] if type(node) is not Term or node.group == "abstract" else []
    if type(node) is Prefix:  # first letters are only taken from title/abstract words
        if node.group in ("text", "title", "abstract"):
            keys.append((FIRST, node.stem[:_FIRST_LETTERS]))
        return keys
    words = node.words if type(node) is Phrase else (node.word,)  # type: ignore[union-attr]
    return keys + [(_SET_OF[node.group], w) for w in words]


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


class Matcher:
    """Matches papers against many interests; parses every query up front (QuerySyntaxError).

    `sample`: papers like the ones to be matched (recent ones, say). Their word frequencies pick
    rarer anchors, which makes matching faster; the result never depends on them.
    """

    def __init__(self, interests: Iterable[Interest], sample: Iterable[Paper] = ()):
        self.interests = list(interests)
        self._names = [i.id for i in self.interests]
        self._nodes: list[Node | None] = []
        self._preds: list[Pred] = []
        self._ids: dict[str, int] = {}  # canonical query text -> clause id, so shared topics run once
        self._plans = [self._plan(i) for i in self.interests]
        self._users: list[list[int]] = [[] for _ in self._nodes]  # clause id -> interest indexes
        for n, (own, topics) in enumerate(self._plans):
            clauses = [c for _, c in topics] if own is None else [own] + [c for _, c in topics]
            for c in dict.fromkeys(clauses):  # once per interest, however often it names a clause
                self._users[c].append(n)
        self._collectors: dict[tuple[int, str | None], Callable[[Doc], list[tuple[Hit, float]]]] = {}
        self._build_index(Rarity(sample))

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

    def _build_index(self, rarity: Rarity) -> None:
        # One posting table per (where of the first key, where of the second key or None); each
        # posting is (clause, what of the second key), checked with one `in` per posting.
        tables: dict[tuple[int, int | None], dict[str, list[tuple[int, str]]]] = {}
        self._always: list[int] = []
        lengths: set[int] = set()
        for c, node in enumerate(self._nodes):
            found = anchors(node, rarity)
            if found is None or any(keys[0][0] not in _SETS for keys in found):
                self._always.append(c)
                continue
            for keys in found:
                lengths.update(len(what) for where, what in keys if where == FIRST)
                (where, what), (at, other) = keys[0], (keys[1] if len(keys) > 1 else (None, ""))
                tables.setdefault((where, at), {}).setdefault(what, []).append((c, other))
        self._tables = [(where, at, postings) for (where, at), postings in tables.items()]
        self._lengths = sorted(lengths)

    def candidates(self, doc: Doc) -> set[int]:
        """Clause ids that may hold for `doc`: those whose anchor keys it has, and the unanchored."""
        view = doc
        if self._lengths:
            view = (*doc, {w[:n] for w in doc[GROUP["text"]] for n in self._lengths})
        found = set(self._always)
        for where, at, postings in self._tables:
            present = postings.keys() & view[where]  # C-level: iterates the smaller side
            if present:
                hits = chain.from_iterable(map(postings.__getitem__, present))
                if at is None:
                    found.update(c for c, _ in hits)
                else:
                    second = view[at]
                    found.update([c for c, other in hits if other in second])
        return found

    def match(self, papers: Sequence[Paper]) -> list[Match]:
        """Matches grouped by paper order, then interest order."""
        out: list[Match] = []
        preds, users = self._preds, self._users
        for paper in papers:
            doc = document(paper)
            holding = {c for c in self.candidates(doc) if preds[c](doc)}
            interested = sorted(set().union(*(users[c] for c in holding)))
            self._collect(paper, doc, interested, holding.__contains__, out)
        return out

    def match_naive(self, papers: Sequence[Paper]) -> list[Match]:
        """Every interest against every paper, no index: the reference `match` must agree with."""
        out: list[Match] = []
        for paper in papers:
            doc = document(paper)
            self._collect(paper, doc, range(len(self.interests)), lambda c: self._preds[c](doc), out)
        return out

    def _collect(self, paper: Paper, doc: Doc, interests: Iterable[int],
                 holds: Callable[[int], bool], out: list[Match]) -> None:
        """Append a Match for each of `interests` one of whose clauses holds."""
        cache: dict[tuple[int, str | None], _Hits] = {}
        bonus = min(max(paper.upvotes or 0, 0), 1000) / 10000  # upvotes only break ties
        for n in interests:
            own, topics = self._plans[n]
            if not topics:  # the common case, kept short: one clause, its hits cached per paper
                if holds(own):  # type: ignore[arg-type]
                    _, hits, score = cache.get((own, None)) or self._hits(own, None, doc, cache)
                    out.append(Match(self._names[n], paper, round(score + bonus, 6), hits))
                continue
            parts = [self._hits(own, None, doc, cache)] if own is not None and holds(own) else []
            parts += [self._hits(c, name, doc, cache) for name, c in topics if holds(c)]
            if parts:  # query hits first, then each topic's; a hit found twice counts once
                found = _unique([p for part, _, _ in parts for p in part], lambda p: p[0]) \
                    if len(parts) > 1 else parts[0][0]
                score = sum(weight for _, weight in found) + bonus
                out.append(Match(self._names[n], paper, round(score, 6), tuple(h for h, _ in found)))

    def _hits(self, c: int, topic: str | None, doc: Doc,
              cache: dict[tuple[int, str | None], _Hits]) -> _Hits:
        """The hits of clause `c` (which holds) for this paper, computed once per paper."""
        if (c, topic) not in cache:
            collect = self._collectors.get((c, topic))
            if collect is None:  # compiled on first use: most (clause, topic) pairs never match
                collect = self._collectors[c, topic] = compile_hits(self._nodes[c], topic)
            found = collect(doc)
            cache[c, topic] = (found, tuple(h for h, _ in found), sum(w for _, w in found))
        return cache[c, topic]
