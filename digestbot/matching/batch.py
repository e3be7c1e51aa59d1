"""Query-at-a-time evaluation over a batch of papers: each clause runs once per batch, not per paper.

A `Batch` holds, for each word set of the documents (title, author, keyword, text), posting lists
word -> bitset of paper positions (Python ints: `&`, `|`, `& ~` run in C over all papers at once),
and `bits`: the bitsets of the words the index numbers (every word a clause looks up), in a list
indexed by number. `compile_batch(node, index)(batch, batch.bits)` is the bitset of the papers
for which `node.evaluate(doc)` holds, computed by one generated expression (`compile.LambdaCode`)
that reads its words' papers by number, without a string look-up: word sets decide terms and
prefixes exactly; phrases, abstract-only words and abstract prefixes take their words' postings
as candidates and confirm each one with the per-paper substring test (`needle_key`). The index
(`Index.batch_candidates`) skips clauses none of whose anchors one paper of the batch has.
Worth it when many papers share candidate clauses: `Matcher` uses it from `BATCH_MIN` papers.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from digestbot.matching.compile import LambdaCode, balanced_join, effort, needle_key
from digestbot.matching.index import Index
from digestbot.matching.nodes import (
    COMPARE,
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
    StringAt,
    Term,
    Upvotes,
    WordsAt,
)
from digestbot.models import Paper

BatchPred = Callable[["Batch", list[int]], int]  # (batch, its bits) -> its papers for which it holds


class Batch:
    """The papers' documents, their words as posting bitsets, and the papers of each word the
    index numbers (`bits`), with the look-ups compiled clauses need."""

    __slots__ = ("docs", "all", "words", "bits", "_sorted", "_prefixed", "_upvotes", "_texts")

    def __init__(self, papers: Sequence[Paper], index: Index):
        self.all = (1 << len(papers)) - 1
        self.words: dict[WordsAt, dict[str, int]] = {g: {} for g in WORD_SETS}
        sets = [(g, postings, postings.get) for g, postings in self.words.items()]
        self.docs: list[Doc] = []
        for i, paper in enumerate(papers):  # a paper's words go in while they are in the CPU cache
            doc = index.document(paper)
            self.docs.append(doc)
            bit = 1 << i
            for g, postings, get in sets:
                for w in doc[g]:  # the set's words, each once per paper
                    postings[w] = get(w, 0) | bit
        self._sorted: dict[WordsAt, list[str]] = {}
        self._prefixed: dict[tuple[WordsAt, str], int] = {}
        self._upvotes: dict[tuple[str, int], int] = {}
        self._texts: dict[StringAt, list[str]] = {}  # where -> each document's string there
        # number -> papers: what generated code reads (`B[v0]`, see `Index.number`)
        self.bits = index.batch_bits(self.words, self.all, lambda n: self.upvotes(">=", n))

    def prefixed(self, g: WordsAt, stem: str) -> int:
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

    def confirm(self, bits: int, where: StringAt, needle: str) -> int:
        """The papers of `bits` whose document has `needle` in its string at `where`."""
        texts = self._texts.get(where)
        if texts is None:
            texts = self._texts[where] = [doc[where] for doc in self.docs]
        found = 0
        while bits:  # each paper of `bits`, highest first
            i = bits.bit_length() - 1
            bit = 1 << i
            if needle in texts[i]:
                found |= bit
            bits ^= bit
        return found

    def abstract_word(self, within: int, text: int, title: int, where: StringAt, needle: str) -> int:
        """The papers of `within` with a word in the abstract, given the papers with it in the
        text and in the title: in the text but not the title, or in both and found in the
        abstract's string."""
        text &= within
        both = text & title
        return (text & ~both) | self.confirm(both, where, needle) if both else text


def compile_batch(node: Node | None, index: Index) -> BatchPred:
    """A function of a batch (and its `bits`) equivalent to `node.evaluate` on each of its
    papers: the bitset of the papers for which `node` holds. Generated as one expression (see
    `compile.LambdaCode`); a word's papers are read by its number in `index`. An AND passes each
    child only the papers its earlier children left (and stops when none is left), so a phrase
    confirms few candidates."""
    src = _BatchSource(index)
    return src.function("b, B", _holding(node, None, src))


class _BatchSource(LambdaCode):
    """A batch function's source: words become their numbers' bitsets, `B[...]`."""

    def __init__(self, index: Index):
        super().__init__()
        self.index = index
        self.names = 0  # papers kept along an AND: x1, x2, ...

    def word(self, where: WordsAt, word: str) -> str:
        """An expression: the papers with `word` in word set `where`."""
        return f"B[{self(self.index.number(where, word))}]"

    def name(self) -> str:
        self.names += 1
        return f"x{self.names}"


def _holding(node: Node | None, within: str | None, src: _BatchSource) -> str:
    """An expression: the papers of bitset `within` (a name; None: all) for which `node` holds."""
    if node is None:
        return within or "b.all"
    if isinstance(node, (Term, Phrase, Prefix)):
        return _leaf(node, within, src)
    if isinstance(node, Upvotes):
        return _among(within, [f"b.upvotes({src(node.op)}, {src(node.value)})"])
    if isinstance(node, Not):
        return f"{within or 'b.all'} & ~({_holding(node.child, within, src)})"
    if isinstance(node, Or):
        return balanced_join("|", [f"({_holding(c, within, src)})" for c in node.children])
    return _and(node, within, src)


def _among(within: str | None, bitsets: list[str]) -> str:
    """The papers of `within` (None: all) in every one of `bitsets`."""
    return balanced_join("&", ([within] if within else []) + bitsets) or "b.all"


def _and(node: And, within: str | None, src: _BatchSource) -> str:
    """AND: plain terms first, then the rest, cheap tests before substring tests, NOTs last,
    each narrowing the papers (`(x1 := ...) and ...`); 0 once none is left."""
    words: list[str] = []
    rest: list[Node] = []
    for child in node.children:
        if isinstance(child, Term) and child.group != "abstract":
            words.append(src.word(WORD_SET_OF[child.group], child.word))
        else:
            rest.append(child)
    rest.sort(key=lambda c: (isinstance(c, Not), effort(c)))  # substring tests on the fewest papers
    steps = [_among(within, words)] if words else []
    for child in rest:
        if steps:
            within = src.name()
            steps[-1] = f"({within} := {steps[-1]})"
        steps.append(_holding(child, within, src))
    return "(" + " and ".join(steps) + ")"


def _leaf(node: Term | Phrase | Prefix, within: str | None, src: _BatchSource) -> str:
    """Word sets decide a term or prefix exactly, except in the abstract, which has no word set
    (text = title + abstract): there, and for phrases, candidates are confirmed by the substring
    test of the per-paper functions (`needle_key`)."""
    s = WORD_SET_OF[node.group]
    if isinstance(node, Term) and node.group != "abstract":
        return _among(within, [src.word(s, node.word)])
    if isinstance(node, Prefix) and node.group != "abstract":
        return _among(within, [f"b.prefixed({s}, {src(node.stem)})"])
    where, needle = needle_key(node)
    if isinstance(node, Term):  # not in the title: in the abstract; in both: the abstract must say so
        return (f"b.abstract_word({within or 'b.all'}, {src.word(s, node.word)}, "
                f"{src.word(TITLE_WORDS, node.word)}, {where}, {src(needle)})")
    if isinstance(node, Prefix):
        return f"b.confirm({_among(within, [f'b.prefixed({s}, {src(node.stem)})'])}, {where}, {src(needle)})"
    words = [src.word(s, w) for w in node.words]
    return f"b.confirm({_among(within, words)}, {where}, {src(needle)})"
