"""The fast path's per-paper work: a paper's document, and queries compiled to Python functions.

`compile_node(node)(doc) == node.evaluate(doc)` and `compile_explain` agrees with `node.hits`. A
query becomes the source of one `lambda d: ...`, so a paper costs one call instead of a call per
node: plain terms of one word set fold into one set operation and cheap tests go first. The
source depends only on the query's *shape*: every word, needle and number is an argument of a
factory compiled once per shape (`LambdaCode`), so no text of a query ever becomes code, and
100,000 queries of a few dozen shapes compile a few dozen times. The document's positions are
interpolated by name (`d[{TITLE_WORDS}]`): the generated source holds the number, which indexes the
tuple fastest. The property tests hold the functions to the nodes.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, TypeVar

from digestbot.matching.nodes import (
    ABSTRACT_STRING,
    SEARCHED,
    STRING_AT,
    TEXT_WORDS,
    TITLE_WORDS,
    UPVOTES,
    WEIGHTS,
    WORD_SET_OF,
    WORDS_AT,
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
    tokenize,
    tokenize_items,
)
from digestbot.models import Hit, Paper

Pred = Callable[[Doc], bool]
Probe = tuple[int, str]  # (where, what): the paper has it when `what in doc[where]` (index.py adds places)
Needle = tuple[StringAt, str]  # a probe of a string: a substring search
Hits = tuple[tuple[Hit, float], ...]  # (hit, weight) pairs, each hit once
Explanation = tuple[tuple[Hit, ...], float, Hits]  # the hits, the sum of their weights, both
Explain = Callable[[Doc], Explanation]
Item = TypeVar("Item")
OPERATOR = {">=": ">=", ">": ">", "<=": "<=", "<": "<", "=": "=="}  # upvotes: query -> Python


class LambdaCode:
    """The body of a lambda being generated, and the values it names (`v0`, `v1`, ...)."""

    # shape -> factory; generated functions are typed by the functions returning them (compile_node ...)
    _factories: dict[tuple[str, str, int], Callable[..., Callable[..., Any]]] = {}

    def __init__(self) -> None:
        self.values: list[object] = []
        self._locals = 0

    def local(self) -> str:
        """A fresh name for a result the expression keeps (`(t0 := ...)`)."""
        self._locals += 1
        return f"t{self._locals - 1}"

    def __call__(self, value: object) -> str:
        """The name under which the function will see `value`. A word or needle is interned: 50,000
        queries over one vocabulary then hold each word once, not once per query (issue 21: memory)."""
        self.values.append(sys.intern(value) if type(value) is str else value)
        return f"v{len(self.values) - 1}"

    def function(self, params: str, body: str) -> Callable[..., Any]:
        """`lambda params: body`, with the values bound to their names."""
        key = (params, body, len(self.values))
        factory = self._factories.get(key)
        if factory is None:  # the source holds only names, operators and our own constants
            # The values become the inner lambda's defaults, not its closure: a default costs a slot of
            # one tuple, a closure cell 40 bytes more each (100,000 queries hold millions), and reads faster.
            names = [f"v{i}" for i in range(len(self.values))]
            defaults = "".join(f", {name}={name}" for name in names)
            factory = self._factories[key] = eval(f"lambda {', '.join(names)}: lambda {params}{defaults}: {body}", {})
        return factory(*self.values)


def balanced_join(op: str, parts: list[str]) -> str:
    """`parts` joined by a binary operator, a long list as a balanced tree: Python's compiler
    recurses once per operator of a chain, and a query may OR thousands of words."""
    if len(parts) <= 16:
        return f" {op} ".join(parts)
    half = len(parts) // 2
    return f"({balanced_join(op, parts[:half])}) {op} ({balanced_join(op, parts[half:])})"


def document(paper: Paper, keep: Callable[[str], bool] | None = None) -> Doc:
    """Tokenise a paper once into the document the nodes and generated functions read (nodes.py).
    `keep`: if given, the word sets hold only the words it keeps (see `Index.document`)."""
    title, abstract = tokenize(paper.title), tokenize(paper.abstract)
    authors, keywords = tokenize_items(paper.authors), tokenize_items(paper.ai_keywords)
    # " a b | c d ": a phrase needle " b c " cannot span two authors or two keywords.
    title_string, abstract_string = f" {' '.join(title)} ", f" {' '.join(abstract)} "
    author_string, keyword_string = f" {' '.join(authors)} ", f" {' '.join(keywords)} "
    if keep is None:
        title_words, text_words = set(title), set(abstract)
        author_words, keyword_words = _words(authors), _words(keywords)
    else:  # "|" is no word: never kept
        title_words, text_words = set(filter(keep, title)), set(filter(keep, abstract))
        author_words, keyword_words = set(filter(keep, authors)), set(filter(keep, keywords))
    text_words.update(title_words)
    return (title_words, author_words, keyword_words, text_words, title_string, abstract_string, author_string,
            keyword_string, title_string + "|" + abstract_string, paper.upvotes or 0)


def _words(items: list[str]) -> set[str]:
    words = set(items)
    words.discard("|")
    return words


def compile_node(node: Node | None) -> Pred:
    """A function equivalent to `node.evaluate`."""
    src = LambdaCode()
    return src.function("d", holds(node, src))


def holds(node: Node | None, src: LambdaCode) -> str:
    """An expression over the document `d`: does `node` hold?"""
    if node is None:
        return "True"
    if isinstance(node, Term) and node.group != "abstract":
        return f"{src(node.word)} in d[{WORDS_AT[node.group]}]"
    if isinstance(node, Prefix):
        where, needle = needle_key(node)
        return f"{src(needle)} in d[{where}]"
    if isinstance(node, (Term, Phrase)):  # a set test first rejects most papers cheaply
        where, needle = needle_key(node)
        word = _screen(node) if isinstance(node, Phrase) else node.word
        return f"({src(word)} in d[{WORD_SET_OF[node.group]}] and {src(needle)} in d[{where}])"
    if isinstance(node, Upvotes):
        return f"d[{UPVOTES}] {OPERATOR[node.op]} {src(node.value)}"
    if isinstance(node, Not):
        return f"not ({holds(node.child, src)})"
    return _junction(node, src)


def _screen(phrase: Phrase) -> str:
    """The word whose set look-up screens a phrase's string search: its longest, likely its rarest."""
    return max(phrase.words, key=len)


def needle_key(node: Term | Phrase | Prefix) -> Needle:
    """The test key that decides the leaf: a substring of its group's string."""
    return STRING_AT[node.group], f" {node.word} " if isinstance(node, Term) else node.needle


def _junction(node: And | Or, src: LambdaCode) -> str:
    """AND/OR: plain terms of one word set fold into one set operation; cheap tests go first."""
    words: dict[WordsAt, set[str]] = {}
    rest: list[Node] = []
    for child in node.children:
        if isinstance(child, Term) and child.group != "abstract":
            words.setdefault(WORDS_AT[child.group], set()).add(child.word)
        else:
            rest.append(child)
    rest.sort(key=effort)
    if isinstance(node, And):
        parts = [f"{src(next(iter(w)))} in d[{g}]" if len(w) == 1 else f"{src(frozenset(w))} <= d[{g}]"
                 for g, w in words.items()]
        glue = " and "
    else:
        parts = [f"{src(next(iter(w)))} in d[{g}]" if len(w) == 1
                 else f"not {src(frozenset(w))}.isdisjoint(d[{g}])" for g, w in words.items()]
        glue = " or "
    return "(" + glue.join(parts + [f"({holds(c, src)})" for c in rest]) + ")"


def effort(node: Node) -> int:
    """Rough cost of evaluating `node`: set look-ups 1, substring searches 3."""
    if isinstance(node, (And, Or)):
        return 1 + sum(map(effort, node.children))
    if isinstance(node, Not):
        return effort(node.child)
    return 1 if isinstance(node, Upvotes) or (isinstance(node, Term) and node.group != "abstract") else 3


def compile_explain(node: Node | None, topic: str | None) -> Explain:
    """Why `node` (which holds) matched a document, as `node.hits` says it, each hit once.

    Which of the query's leaves count, and in which fields, is a bit mask of presence tests; the
    hits of each mask are built once (`_Explanations`), so a paper costs its tests and a look-up.
    """
    src = LambdaCode()
    probes = list(_probes(node, topic, None, src))
    table = src(_Explanations(topic, tuple(_pair(hit, weight) for _, hit, weight in probes)))
    mask = balanced_join("|", [f"({test}) << {j}" for j, (test, _, _) in enumerate(probes)]) or "0"
    return src.function("d", f"{table}[{mask}]")


class _Explanations(dict[int, Explanation]):
    """mask -> Explanation: the hits of the probes whose bits are set, the topic's first."""

    __slots__ = ("head", "probes")  # one table per clause: without slots each also had a __dict__ (50,000: 16 MB)

    def __init__(self, topic: str | None, probes: Hits):
        super().__init__()
        self.head: Hits = ((shared_hit(topic, "topic", topic), 0.0),) if topic is not None else ()
        self.probes = probes

    def __missing__(self, mask: int) -> Explanation:
        found = unique([*self.head, *(p for j, p in enumerate(self.probes) if mask >> j & 1)], lambda p: p[0])
        value = self[mask] = explanation(found)
        return value


def explanation(found: Hits) -> Explanation:
    """The explanation of these (hit, weight) pairs; one object for every clause that explains a paper
    the same way (the common words of a vocabulary are the hits of thousands of queries)."""
    return _explanation(found)


@lru_cache(maxsize=65536)
def _explanation(found: Hits) -> Explanation:
    return tuple(hit for hit, _ in found), sum(weight for _, weight in found), found


@lru_cache(maxsize=65536)
def _pair(hit: Hit, weight: float) -> tuple[Hit, float]:
    return hit, weight


# One Hit object per (text, field, topic) across every compiled query (as `explanation`).
shared_hit = lru_cache(maxsize=65536)(Hit)


def unique(items: list[Item], hit_of: Callable[[Item], Hit]) -> tuple[Item, ...]:
    """The first item for each distinct hit. (A Hit's own hash runs Python code: use a tuple.)"""
    first: dict[tuple[str, str, str | None], Item] = {}
    for item in items:
        hit = hit_of(item)
        first.setdefault((hit.text, hit.field, hit.topic), item)
    return tuple(first.values())


def _probes(node: Node | None, topic: str | None, gate: _Gate | None, src: LambdaCode,
            certain: bool = True) -> Iterator[tuple[str, Hit, float]]:
    """(is it a reason here?, its Hit, weight) for every leaf and field that may count, in query
    order: a leaf counts where it is present, and below an OR only in a branch that holds
    (`gate`). NOT and upvotes are never reasons. A leaf that is `certain` to be present (an AND
    of the clause, or of a branch that holds) and is not in the title is in the abstract: its
    long abstract string is searched only if it is in the title too."""
    if node is None or isinstance(node, (Not, Upvotes)):
        return
    if isinstance(node, And):
        for child in node.children:
            yield from _probes(child, topic, gate, src, certain)
        return
    if isinstance(node, Or):
        for child in node.children:
            if isinstance(child, (Term, Phrase, Prefix)):  # a leaf present is a branch that holds
                yield from _probes(child, topic, gate, src, False)
            else:
                yield from _probes(child, topic, _Gate(gate, holds(child, src), src.local()), src)
        return
    fields = SEARCHED[node.group]
    in_title = src.local() if certain and fields == ("title", "abstract") else None
    for field in fields:
        hit = shared_hit(sys.intern(node.label), field, topic)
        if in_title is None:
            test = _present(node, field, src)
        elif field == "title":  # kept: the abstract's test below reads it
            test = f"({in_title} := {_present(node, field, src)})"
        else:
            test = f"(not {in_title} or {_in_abstract_string(node, src)})"
        yield (gate.prefix() if gate else "") + test, hit, WEIGHTS[field] * node.bonus


class _Gate:
    """A branch below an OR, which must hold for its leaves to count. Its test runs once per
    paper, in the first probe below it, and is kept in a name that later probes read (after
    their outer gates' names, so an unassigned name is never read)."""

    def __init__(self, outer: _Gate | None, test: str, name: str):
        self.outer, self.test, self.name, self.tested = outer, test, name, False

    def prefix(self) -> str:
        outer = self.outer.prefix() if self.outer else ""
        if self.tested:
            return f"{outer}{self.name} and "
        self.tested = True
        return f"{outer}({self.name} := ({self.test})) and "


def _present(node: Term | Phrase | Prefix, field: str, src: LambdaCode) -> str:
    """An expression equivalent to `node.present(doc, field)`."""
    if isinstance(node, Phrase) and field == "abstract":  # a set look-up spares most string searches
        return f"({src(_screen(node))} in d[{TEXT_WORDS}] and {src(node.needle)} in d[{ABSTRACT_STRING}])"
    if not isinstance(node, Term):
        return f"{src(node.needle)} in d[{STRING_AT[field]}]"
    word = src(node.word)
    if field == "abstract":  # as has_word: only a title word needs the string search
        return (f"({word} in d[{TEXT_WORDS}] and ({word} not in d[{TITLE_WORDS}]"
                f" or {_in_abstract_string(node, src)}))")
    return f"{word} in d[{WORDS_AT[field]}]"


def _in_abstract_string(node: Term | Phrase | Prefix, src: LambdaCode) -> str:
    needle = f" {node.word} " if isinstance(node, Term) else node.needle
    return f"{src(needle)} in d[{ABSTRACT_STRING}]"
