"""The inverted index: which clauses a paper can possibly satisfy, without evaluating them.

A clause's *anchors* are tuples of one or two keys such that a paper satisfying the clause has
every key of at least one tuple. A key is `(where, what)`, and a paper has it when `what` is in
the set or string at `where` (a *probe*, `compile.Probe`): a word in a word set of its document
(title, author, keyword, text), in the first letters of its text words (FIRST_LETTERS) or in the
steps of an upvotes ladder it has reached (UPVOTED), or a needle in a string of its document (a
phrase, a prefix). Each tuple starts with a set key, the rarest one (by a sample's word
frequencies), which the index is keyed by; the second key is looked up in a nested table, so a
paper meets only postings whose both keys it has. In an AND, the two keys come from different
children. Clauses without anchors (only NOT, few upvotes, blank) are candidates for every paper.
The index only ever skips clauses that cannot hold.

The index also numbers every word a clause looks up (`number`), anchor or not: a batch finds the
papers of all of them once (`batch_bits`), and clauses compiled for it read them by number.
Documents made for the index (`document`) keep in their word sets only the words a clause can
look up there: a word of a term or phrase, or one that starts with the stem of a prefix.
"""
from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, combinations, compress
from math import inf, prod
from operator import and_
from typing import Final, TypeGuard, TypeVar

from digestbot.matching.compile import Needle, Probe, document, needle_key
from digestbot.matching.nodes import (
    AUTHOR_WORDS,
    KEYWORD_WORDS,
    STRING_AT,
    TEXT_WORDS,
    TITLE_WORDS,
    UPVOTES,
    WORD_SET_OF,
    WORD_SETS,
    And,
    Doc,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    Term,
    Upvotes,
    WordsAt,
)
from digestbot.models import Paper

Anchor = tuple[Probe, ...]  # one or two keys
Anchors = frozenset[Anchor]  # a paper can match only if it has every key of one anchor
# Sets of keys the index derives from a document, placed after the document's own positions:
FIRST_LETTERS: Final = UPVOTES + 1  # the first letters of the text words (for prefixes)
UPVOTED: Final = UPVOTES + 2  # "N" for each N of _LADDER the paper has at least N upvotes
_LADDER = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
_SETS = frozenset([*WORD_SETS, FIRST_LETTERS, UPVOTED])  # where set keys are; the others are needles
_STRINGS = frozenset(STRING_AT.values())
_CHECK_COST = {TITLE_WORDS: 0, AUTHOR_WORDS: 0, KEYWORD_WORDS: 0, TEXT_WORDS: 0, FIRST_LETTERS: 1, UPVOTED: 0}
_PREFIX_LETTERS = 4  # prefixes are indexed by (up to) their first 4 letters
Answer = TypeVar("Answer")
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
        self.df: Counter[Probe] = Counter()
        self.n = 0
        for paper in sample:
            doc = document(paper)
            for where in WORD_SETS:
                self.df.update((where, w) for w in doc[where])
            self.df.update((UPVOTED, n) for n in _upvoted(doc[UPVOTES]))
            self.df.update({(FIRST_LETTERS, w[:n]) for w in doc[TEXT_WORDS]
                            for n in range(1, _PREFIX_LETTERS + 1)})
            self.n += 1

    def __call__(self, key: Probe) -> float:
        where, what = key
        if where not in _SETS:  # a needle: a phrase is rarer than its words, a prefix than its letters
            if what.endswith(" "):
                return 0.5 * prod(self((TEXT_WORDS, w)) for w in what.split())
            return 0.8 * self((FIRST_LETTERS, what[1:_PREFIX_LETTERS + 1]))
        if self.n:
            return (self.df[key] + 0.5) / (self.n + 1)
        if where == FIRST_LETTERS:
            return 0.5 / len(what)
        if where == UPVOTED:  # most papers have few upvotes
            return 1.0 / (1 + int(what))
        factor = {TITLE_WORDS: 0.2, AUTHOR_WORDS: 0.01, KEYWORD_WORDS: 0.5}.get(where, 1)
        return factor * (1.0 if what in _COMMON else 1.0 / len(what))


GUESSED = Rarity()  # without a sample of papers


def anchors(node: Node | None, rarity: Callable[[Probe], float] = GUESSED) -> Anchors | None:
    """Key tuples one of which a paper satisfying `node` has all of; None: there are none."""
    if isinstance(node, (Term, Phrase, Prefix)):
        return frozenset([_best(_leaf_keys(node), rarity)])
    if isinstance(node, Upvotes):  # at least N upvotes: the paper has the ladder's step at or below N
        least = {">=": node.value, ">": node.value + 1, "=": node.value}.get(node.op, 0)
        return frozenset([((UPVOTED, _upvoted(least)[-1]),)]) if least >= 1 else None
    if isinstance(node, Or):  # any child may hold: every child must be anchored
        union: set[Anchor] = set()
        for child in node.children:
            found = anchors(child, rarity)
            if found is None:
                return None
            union |= found
        return frozenset(union)
    if isinstance(node, And):  # every child holds: one child's anchors do; two children's combined do better

        def cost(found: Anchors) -> float:
            return sum(_cost(anchor, rarity) for anchor in found)

        # the cheapest children only are paired: an AND of thousands of words has millions of pairs
        sets = sorted(((_leaf_cost(a, rarity) if isinstance(c, (Term, Phrase, Prefix)) else cost(a), a)
                       for c in node.children if (a := anchors(c, rarity)) is not None), key=_cost_of)[:8]
        pairs = [(cost(p), p) for (_, a), (_, b) in combinations(sets, 2) if len(a) * len(b) <= 16
                 for p in [frozenset(_paired(x, y, rarity) for x in a for y in b)]]
        return min(sets + pairs, key=_cost_of)[1] if sets else None
    return None  # NOT, few upvotes, blank


def _cost_of(option: tuple[float, Anchors]) -> float:
    cost, _ = option
    return cost


def _upvoted(upvotes: int) -> tuple[str, ...]:
    """The steps of the ladder a paper with `upvotes` has reached."""
    return _STEPS[_clamped(upvotes)]


def _clamped(upvotes: int) -> int:
    return min(max(upvotes, 0), _LADDER[-1])


_STEPS = [tuple(str(n) for n in _LADDER if n <= upvotes) for upvotes in range(_LADDER[-1] + 1)]


def _leaf_keys(node: Term | Phrase | Prefix) -> list[Probe]:
    """Keys a paper has whenever `node` holds in it (all of them)."""
    keys: list[Probe] = [needle_key(node)] if not isinstance(node, Term) or node.group == "abstract" else []
    if isinstance(node, Prefix):  # first letters are only taken from title/abstract words
        if node.group in ("text", "title", "abstract"):
            keys.append((FIRST_LETTERS, node.stem[:_PREFIX_LETTERS]))
        return keys
    words = node.words if isinstance(node, Phrase) else (node.word,)
    return keys + [(WORD_SET_OF[node.group], w) for w in words]


def _leaves(node: Node | None) -> Iterator[Term | Phrase | Prefix]:
    """The terms, phrases and prefixes of a query, NOTs' too, in query order."""
    if isinstance(node, (Term, Phrase, Prefix)):
        yield node
    elif isinstance(node, (And, Or)):
        for child in node.children:
            yield from _leaves(child)
    elif isinstance(node, Not):
        yield from _leaves(node.child)


def _looked_up(leaves: list[Term | Phrase | Prefix]) -> Iterator[Probe]:
    """The word-set keys a batch evaluates a query of these leaves by (`batch.compile_batch`):
    each word of its terms and phrases; a word of the abstract also in the title set (text =
    title + abstract)."""
    for leaf in leaves:
        if not isinstance(leaf, Prefix):
            for word in leaf.words if isinstance(leaf, Phrase) else (leaf.word,):
                yield WORD_SET_OF[leaf.group], word
                if leaf.group == "abstract":
                    yield TITLE_WORDS, word


def _best(keys: Iterable[Probe], rarity: Callable[[Probe], float]) -> Anchor:
    """The rarest set key (the index is keyed by set keys), then the second key to check.

    The second is checked for every paper having the first: a word-set look-up is preferred to
    first letters (a set built per paper), and both to a substring search (a needle, ~3 µs).
    """
    ranked = sorted(set(keys), key=lambda k: (rarity(k), k))
    first = next((k for k in ranked if _is_set_key(k)), ranked[0])
    rest = sorted((k for k in ranked if k != first), key=lambda k: _CHECK_COST.get(k[0], 2))
    return (first, rest[0]) if rest else (first,)


def _paired(x: Anchor, y: Anchor, rarity: Callable[[Probe], float]) -> Anchor:
    """The anchor of an AND of two children anchored by `x` and `y`: the rarest set key, and the
    key to check from the *other* child. Two keys of one child go together (a phrase's words
    co-occur), so a paper having one mostly has both, and the pair would let it through."""
    ranked = sorted(set(x + y), key=lambda k: (rarity(k), k))
    first = next((k for k in ranked if _is_set_key(k)), None)
    other = [k for k in (y if first in x else x) if k != first]
    if first is None or not other:
        return _best(x + y, rarity)
    return first, min(other, key=lambda k: (_CHECK_COST.get(k[0], 2), rarity(k), k))


def _is_set_key(key: Probe) -> bool:
    where, _ = key
    return where in _SETS


def _is_needle(key: Probe) -> TypeGuard[Needle]:
    where, _ = key
    return where in _STRINGS


def _cost(keys: Anchor, rarity: Callable[[Probe], float]) -> float:
    return prod(map(rarity, keys)) if _is_set_key(keys[0]) else inf  # no set key: not indexable


def _leaf_cost(found: Anchors, rarity: Callable[[Probe], float]) -> float:
    """A leaf's keys go together (a phrase's words co-occur): its anchor is as rare as its rarest
    key, not as the product of their rarities, which is for keys of different children."""
    (keys,) = found
    return min(map(rarity, keys)) if _is_set_key(keys[0]) else inf


# A paper's set keys as one set of strings: text words as they are, the others tagged with a
# prefix no word has, so one set intersection per posting list finds them all.
_TAGS = {TEXT_WORDS: "", TITLE_WORDS: "\0t", AUTHOR_WORDS: "\0a", KEYWORD_WORDS: "\0k", FIRST_LETTERS: "\0f",
         UPVOTED: "\0u"}
_TAGGED_WORD_SETS: tuple[WordsAt, ...] = (TITLE_WORDS, AUTHOR_WORDS, KEYWORD_WORDS)
_UPVOTED_KEYS = [tuple(_TAGS[UPVOTED] + n for n in steps) for steps in _STEPS]
_NONE = ""  # the "second key" of a one-key anchor: every paper has it (a word is never empty)


def _tagged(key: Probe) -> str:
    where, what = key
    return _TAGS[where] + what


class Index:
    """Clause ids by anchor keys; `candidates(doc)` are those a paper may satisfy."""

    def __init__(self, rarity: Callable[[Probe], float]):
        # first key -> second set key (_NONE if none) -> clauses, both tagged; a second key that
        # is a needle: first key -> {(where, needle): clauses}, a substring test each.
        self.rarity = rarity
        self.postings: dict[str, dict[str, list[int]]] = {}  # until `freeze` makes them _postings
        self.needles: dict[str, dict[Needle, list[int]]] = {}
        self.always: list[int] = []
        self.lengths: list[int] = []
        self._postings: dict[str, dict[str, tuple[int, ...]]] = {}
        self._needles: dict[str, list[tuple[Needle, tuple[int, ...]]]] = {}
        self._numbers: dict[str, int] = {}
        self._numbered: dict[int, dict[str, int]] = {where: {} for where in _SETS}
        self._keys: dict[str, Probe] = {}  # tagged -> (where, what), while clauses are added
        self._needle_firsts: list[tuple[int, tuple[int, ...]]] = []
        self._pairs: tuple[array[int], array[int], array[int]] = (array("I"), array("I"), array("I"))
        self._first_letters = _FirstLetters()
        self._vocabulary = _Vocabulary()
        self._matters = self._vocabulary.__getitem__

    def add(self, c: int, node: Node | None) -> None:
        """Index clause `c` by the anchors of its query; call `freeze` when all are added."""
        leaves = list(_leaves(node))
        self._vocabulary.add(leaves)
        for key in _looked_up(leaves):  # numbered in `freeze`: batches evaluate clauses by number
            self._tag(key)
        found = anchors(node, self.rarity)
        if found is None or not all(_is_set_key(keys[0]) for keys in found):
            self.always.append(c)
            return
        for first, *second in found:
            self.lengths += [len(what) for where, what in (first, *second) if where == FIRST_LETTERS]
            if second and _is_needle(second[0]):
                self.needles.setdefault(self._tag(first), {}).setdefault(second[0], []).append(c)
            else:
                other = self._tag(second[0]) if second else _NONE
                self.postings.setdefault(self._tag(first), {}).setdefault(other, []).append(c)

    def _tag(self, key: Probe) -> str:
        """The key as one string (`_tagged`), remembered until `freeze` numbers it per word set."""
        tagged = _tagged(key)
        self._keys[tagged] = key
        return tagged

    def freeze(self) -> None:
        """Compact for look-ups. Tuples of ints are untracked by the cyclic GC, which otherwise
        walks every posting list in each full collection (~0.4 s per million)."""
        self.lengths = sorted(set(self.lengths))
        self._first_letters = _FirstLetters(self.lengths)
        self._numbers = {_NONE: 0}  # set key -> its number (batches find their papers in a list)
        firsts, seconds, clauses = self._pairs  # every posting, flat: one scan in C per batch
        for first, postings in self.postings.items():
            number = self._numbers.setdefault(first, len(self._numbers))
            frozen = self._postings[first] = {}
            for other, ids in postings.items():
                frozen[other] = tuple(ids)
                firsts.extend([number] * len(ids))
                seconds.extend([self._numbers.setdefault(other, len(self._numbers))] * len(ids))
                clauses.extend(ids)
            postings.clear()  # its lists go now: memory peaks while the matcher is built
        self.postings = {}
        self._needles = {first: [(k, tuple(c)) for k, c in tests.items()] for first, tests in self.needles.items()}
        self._needle_firsts = [(self._numbers.setdefault(first, len(self._numbers)),
                                tuple(c for ids in tests.values() for c in ids))
                               for first, tests in self.needles.items()]
        for tagged in self._keys:  # the words clauses look up, anchors or not
            self._numbers.setdefault(tagged, len(self._numbers))
        for tagged, number in self._numbers.items():  # batches look their words up per word set
            if tagged:
                where, what = self._keys[tagged]
                self._numbered[where][what] = number
        self._keys = {}

    def document(self, paper: Paper) -> Doc:
        """The paper's document for the indexed clauses: its word sets hold only the words that
        can matter to one of them (`_Vocabulary`); its strings are whole."""
        return document(paper, self._matters)

    def number(self, where: WordsAt, word: str) -> int:
        """The number of a word a clause looks up in word set `where`: its papers in a batch are
        `bits[number]` (see `batch_bits`)."""
        return self._numbered[where][word]

    def keys(self, doc: Doc) -> set[str]:
        """The paper's set keys, tagged, and _NONE. (map over C methods: no bytecode per word.)"""
        text = doc[TEXT_WORDS]
        keys = set(text)
        for where in _TAGGED_WORD_SETS:
            keys.update(map(_TAGS[where].__add__, doc[where]))
        if self.lengths:  # the first letters of its words, for prefixes
            keys.update(chain.from_iterable(map(self._first_letters.__getitem__, text)))
        keys.update(_UPVOTED_KEYS[_clamped(doc[UPVOTES])])
        keys.add(_NONE)
        return keys

    def candidates(self, doc: Doc) -> set[int]:
        """Clause ids that may hold for `doc`: those whose anchor keys it has, and the unanchored."""
        keys = self.keys(doc)
        # Set intersections run in C and iterate the smaller side; comprehensions over their
        # results are the only Python-level loops (one step per posting list the paper meets).
        postings, needles = self._postings, self._needles
        lists = [seconds[second] for seconds in map(postings.__getitem__, postings.keys() & keys)
                 for second in seconds.keys() & keys]
        lists += [clauses for first in needles.keys() & keys
                  for (where, needle), clauses in needles[first] if needle in doc[where]]
        return set(chain(self.always, chain.from_iterable(lists)))

    def batch_bits(self, words: dict[WordsAt, dict[str, int]], everyone: int,
                   upvoted: Callable[[int], int]) -> list[int]:
        """Each numbered key's papers in a batch (0: none): `words` maps each word set (title,
        author, keyword, text) to its words' bitsets of papers, `upvoted(n)` is the bitset of
        those with at least n upvotes. A list indexed by number: clauses compiled for batches
        read their words' papers there, without a string look-up (`number`)."""
        bits = [0] * len(self._numbers)
        bits[0] = everyone  # _NONE: the second key of a one-key anchor
        for where, postings in words.items():
            numbered = self._numbered[where]
            for w in numbered.keys() & postings.keys():
                bits[numbered[w]] = postings[w]
        numbered = self._numbered[FIRST_LETTERS]
        for n in self.lengths:  # first letters of text words, for prefixes
            for w, papers in words[TEXT_WORDS].items():
                number = numbered.get(w[:n])
                if number is not None:
                    bits[number] |= papers
        for step, number in self._numbered[UPVOTED].items():
            bits[number] = upvoted(int(step))
        return bits

    def batch_candidates(self, bits: list[int]) -> set[int]:
        """Clause ids that may hold for a paper of a batch whose keys' papers are `bits`
        (`batch_bits`): those of the postings one paper has both keys of.

        A batch meets most of the index, so this scans all of it in C: the postings are three
        flat arrays (first key's number, second key's number, clause id), and `compress` keeps
        the clauses whose two keys' papers meet."""
        on = bits.__getitem__
        firsts, seconds, clauses = self._pairs
        found = list(self.always)
        found += compress(clauses, map(and_, map(on, firsts), map(on, seconds)))
        for first, ids in self._needle_firsts:  # a substring test: evaluation's
            if bits[first]:
                found += ids
        return set(found)


class _Remembered(dict[str, Answer]):
    """word -> `answer(word)`, remembered: the words of papers repeat. Bounded: it starts over
    at LIMIT words."""

    LIMIT = 200_000

    def answer(self, word: str) -> Answer:
        raise NotImplementedError

    def __missing__(self, word: str) -> Answer:
        if len(self) >= self.LIMIT:
            self.clear()
        found = self[word] = self.answer(word)
        return found


class _FirstLetters(_Remembered[tuple[str, ...]]):
    """word -> its tagged first-letter keys: slicing every word of every paper cost more than
    tokenising it."""

    def __init__(self, lengths: Iterable[int] = ()):
        super().__init__()
        self.lengths = tuple(lengths)

    def answer(self, word: str) -> tuple[str, ...]:
        return tuple({_TAGS[FIRST_LETTERS] + word[:n] for n in self.lengths})


class _Vocabulary(_Remembered[bool]):
    """word -> can it matter to a clause: it is a word of a term or phrase, or starts with the
    stem of a prefix. The others are left out of the word sets of a document (`Index.document`):
    no clause looks them up there, and each one would cost its place in a set and in the
    postings of a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.words: set[str] = set()
        self.stems: set[str] = set()
        self.lengths: tuple[int, ...] = ()

    def add(self, leaves: list[Term | Phrase | Prefix]) -> None:
        """Words and stems of a query's leaves (forgetting the answers given so far)."""
        for leaf in leaves:
            if isinstance(leaf, Prefix):
                self.stems.add(leaf.stem)
                self.lengths = tuple(sorted({*self.lengths, len(leaf.stem)}))
            else:
                self.words.update(leaf.words if isinstance(leaf, Phrase) else (leaf.word,))
        self.clear()

    def answer(self, word: str) -> bool:
        return word in self.words or any(word[:n] in self.stems for n in self.lengths)
