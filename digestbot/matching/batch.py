"""Query-at-a-time evaluation over a batch of papers: each clause runs once per batch, not per paper.

A `Batch` holds, for each word set of the documents (title, author, keyword, text), posting lists
word -> bitset of paper positions (Python ints: `&`, `|`, `& ~` run in C over all papers at once).
`compile_batch(node)(batch, within)` is the bitset of the papers of `within` for which
`node.evaluate(doc)` holds: word sets decide terms and prefixes exactly; phrases, abstract-only
words and abstract prefixes take their words' postings as candidates and confirm each one with the
per-paper substring test (`needle_key`). The index (`Index.batch_candidates`) skips clauses none
of whose anchors one paper of the batch has. Worth it when many papers share candidate clauses:
`Matcher` uses it from `BATCH_MIN` papers.
"""
from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterator, Sequence

from digestbot.matching.compile import SET_OF, Key, needle_key
from digestbot.matching.index import Index, tagged_keys
from digestbot.matching.nodes import (
    COMPARE, GROUP, UPVOTES, And, Doc, Node, Not, Or, Phrase, Prefix, Term, Upvotes,
)

BatchPred = Callable[["Batch", int], int]  # (batch, papers) -> those papers for which it holds
_WORD_SETS = (GROUP["title"], GROUP["author"], GROUP["keyword"], GROUP["text"])


class Batch:
    """The papers' documents as posting bitsets, with the look-ups compiled clauses need."""

    def __init__(self, docs: Sequence[Doc]):
        self.docs = docs
        self.all = (1 << len(docs)) - 1
        self.words: dict[int, dict[str, int]] = {g: {} for g in _WORD_SETS}
        for g, postings in self.words.items():
            get = postings.get
            for i, doc in enumerate(docs):
                bit = 1 << i
                for w in doc[g]:  # the set's words, each once per paper
                    postings[w] = get(w, 0) | bit
        self._sorted: dict[int, list[str]] = {}
        self._prefixed: dict[tuple[int, str], int] = {}
        self._upvotes: dict[tuple[str, int], int] = {}
        self._texts: dict[int, list[str]] = {}  # where -> each document's string there

    def all_of(self, g: int, words: Sequence[str], within: int) -> int:
        """The papers of `within` whose word set `g` has every one of `words`."""
        postings = self.words[g]
        for w in words:
            within &= postings.get(w, 0)
            if not within:
                break
        return within

    def prefixed(self, g: int, stem: str) -> int:
        """Papers with a word starting with `stem` in word set `g` (remembered per batch)."""
        key = (g, stem)
        if key not in self._prefixed:
            if g not in self._sorted:
                self._sorted[g] = sorted(self.words[g])
            vocab, postings, bits = self._sorted[g], self.words[g], 0
            for k in range(bisect_left(vocab, stem), len(vocab)):
                if not vocab[k].startswith(stem):
                    break
                bits |= postings[vocab[k]]
            self._prefixed[key] = bits
        return self._prefixed[key]

    def upvotes(self, op: str, value: int) -> int:
        key = (op, value)
        if key not in self._upvotes:
            cmp = COMPARE[op]
            self._upvotes[key] = sum(1 << i for i, d in enumerate(self.docs) if cmp(d[UPVOTES], value))
        return self._upvotes[key]

    def confirm(self, bits: int, where: int, needle: str) -> int:
        """The papers of `bits` whose document has `needle` in its string at `where`."""
        texts = self._texts.get(where)
        if texts is None:
            texts = self._texts[where] = [doc[where] for doc in self.docs]
        found = 0
        while bits:  # as `positions`, inline: this loop runs for every phrase candidate
            i = bits.bit_length() - 1
            bit = 1 << i
            if needle in texts[i]:
                found |= bit
            bits ^= bit
        return found

    def keys(self, lengths: Sequence[int]) -> dict[str, int]:
        """Tagged index keys (as `Index.keys`) -> the papers having them."""
        return tagged_keys(self.words, lengths, self.all)

    def candidates(self, index: Index) -> set[int]:
        """Clause ids that may hold for some paper of the batch."""
        return index.batch_candidates(self.keys(index.lengths))


def positions(bits: int) -> Iterator[int]:
    """The positions of the set bits, highest first."""
    while bits:
        i = bits.bit_length() - 1
        yield i
        bits ^= 1 << i


def compile_batch(node: Node | None) -> BatchPred:
    """A function of (batch, papers) equivalent to `node.evaluate` on each of those papers: the
    bitset of the papers of `within` for which `node` holds. An AND passes each child only the
    papers its earlier children left, so a phrase confirms few candidates."""
    kind = type(node)
    if node is None:
        return lambda b, within: within
    if kind is Term or kind is Phrase or kind is Prefix:
        return _leaf(node)  # type: ignore[arg-type]
    if kind is Upvotes:
        op, value = node.op, node.value  # type: ignore[union-attr]
        return lambda b, within: within & b.upvotes(op, value)
    if kind is Not:
        inner = compile_batch(node.child)  # type: ignore[union-attr]
        return lambda b, within: within & ~inner(b, within)
    if kind is Or:
        parts = [compile_batch(c) for c in node.children]  # type: ignore[union-attr]
        return lambda b, within: _any(parts, b, within)
    return _and(node)  # type: ignore[arg-type]


def _any(parts: list[BatchPred], b: Batch, within: int) -> int:
    bits = 0
    for part in parts:
        bits |= part(b, within)
    return bits


def _and(node: And) -> BatchPred:
    """AND: plain terms of one word set first, in one call; then the rest, NOTs last; stop once
    no paper is left."""
    words: dict[int, list[str]] = {}
    rest: list[Node] = []
    for child in node.children:
        if type(child) is Term and child.group != "abstract":
            words.setdefault(SET_OF[child.group], []).append(child.word)
        else:
            rest.append(child)
    rest.sort(key=lambda c: type(c) is Not)
    parts = [_all_of(s, tuple(ws)) for s, ws in words.items()] + [compile_batch(c) for c in rest]

    def evaluate(b: Batch, within: int) -> int:
        for part in parts:
            within = part(b, within)
            if not within:
                return 0
        return within
    return evaluate


def _all_of(s: int, words: tuple[str, ...]) -> BatchPred:
    return lambda b, within: b.all_of(s, words, within)


def _abstract_word(b: Batch, text: int, title: int, key: Key) -> int:
    return (text & ~title) | b.confirm(text & title, *key) if text & title else text


def _leaf(node: Term | Phrase | Prefix) -> BatchPred:
    """Word sets decide a term or prefix exactly, except in the abstract, which has no word set
    (text = title + abstract): there, and for phrases, candidates are confirmed by the substring
    test of the per-paper closures (`needle_key`)."""
    s = SET_OF[node.group]
    if type(node) is Term and node.group != "abstract":
        word = node.word
        return lambda b, within: within & b.words[s].get(word, 0)
    if type(node) is Prefix and node.group != "abstract":
        stem = node.stem
        return lambda b, within: within & b.prefixed(s, stem)
    key = needle_key(node)
    if type(node) is Term:  # not in the title: in the abstract; in both: the abstract must say so
        word, title = node.word, GROUP["title"]
        return lambda b, within: _abstract_word(
            b, within & b.words[s].get(word, 0), b.words[title].get(word, 0), key)
    if type(node) is Prefix:
        stem = node.stem
        return lambda b, within: b.confirm(within & b.prefixed(s, stem), *key)
    words = node.words  # type: ignore[union-attr]
    return lambda b, within: b.confirm(b.all_of(s, words, within), *key)
