"""The fast path's per-paper work: a paper's document, and queries compiled to closures over it.

`compile_node(node)(doc) == node.evaluate(doc)` and `compile_hits` agrees with `node.hits`: the
closures skip the AST's attribute look-ups and dispatch, fold plain terms of one word set into one
set operation and test cheap things first. The property tests hold them to the nodes.
"""
from __future__ import annotations

from itertools import chain
from typing import Callable

from digestbot.matching.nodes import (
    COMPARE, GROUP, SEARCHED, TEXT, UPVOTES, WEIGHTS, And, Doc, Node, Not, Or, Phrase, Prefix,
    Term, Upvotes, tokenize,
)
from digestbot.models import Hit, Paper

Pred = Callable[[Doc], bool]
Key = tuple[int, str]  # (where, what): the paper has it when `what in view[where]`
Hits = list[tuple[Hit, float]]  # (hit, weight) pairs, each hit once
SET_OF = {"title": 0, "abstract": 4, "author": 2, "keyword": 3, "text": 4}  # a set holding its words


def document(paper: Paper) -> tuple:
    """Tokenise a paper once into the tuple layout the nodes and closures read (see nodes.py)."""
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
        t, needle = needle_key(node)  # type: ignore[arg-type]
        return lambda d: needle in d[t]
    if kind is Term or kind is Phrase:  # a set test first rejects most papers cheaply
        (t, needle), s = needle_key(node), SET_OF[node.group]  # type: ignore[arg-type, union-attr]
        word = max(node.words, key=len) if kind is Phrase else node.word  # type: ignore[union-attr]
        return lambda d: word in d[s] and needle in d[t]
    if kind is Upvotes:
        cmp, value = COMPARE[node.op], node.value  # type: ignore[union-attr]
        return lambda d: cmp(d[UPVOTES], value)
    if kind is Not:
        inner = compile_node(node.child)  # type: ignore[union-attr]
        return lambda d: not inner(d)
    return _compile_junction(node)  # type: ignore[arg-type]


def needle_key(node: Term | Phrase | Prefix) -> Key:
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


def compile_hits(node: Node | None, topic: str | None) -> Callable[[Doc], Hits]:
    """A closure equivalent to `node.hits` where `node` holds: (Hit, weight) pairs, each once."""
    head = [(Hit(topic, "topic", topic), 0.0)] if topic is not None else []
    probes = _static_probes(node, topic)
    if probes is not None:  # no OR below: which leaves count is known, only the fields vary
        probes = unique(probes, lambda p: p[1])
        return lambda d: head + [(hit, weight) for check, hit, weight in probes if check(d)]
    collect = _collector(node, topic)
    return lambda d: head + unique(collect(d), lambda p: p[0])


def unique(items: list, hit_of: Callable) -> list:
    """The first item for each distinct hit. (A Hit's own hash runs Python code: use a tuple.)"""
    first: dict = {}
    for item in items:
        hit = hit_of(item)
        first.setdefault((hit.text, hit.field, hit.topic), item)
    return list(first.values())


def _collector(node: Node | None, topic: str | None) -> Callable[[Doc], Hits]:
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

