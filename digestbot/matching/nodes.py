"""The query AST (README, "Subscriptions"): words, the document layout, and the reference semantics.

AST nodes evaluate a *document*, the tuple `compile.document` builds once per paper, whose
positions are named below: the word sets of the title, authors, keywords and text (title and
abstract; the abstract has none of its own: it would cost as much as the text set, and its string
answers), each group as a string " w w | w " (phrases, prefixes), and the upvotes. For the index a
document's word sets hold only the words some query can look up (`Index.document`). The fast path
(generated functions in `compile.py` and `batch.py`, the index in `index.py`) is tested against the
nodes here.
"""
from __future__ import annotations

import operator
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

_WORD = re.compile(r"[^\W_]+")  # a letter or digit, Unicode-aware; "_" and punctuation split words
_WORD_OR_BAR = re.compile(r"[^\W_]+|\|")

FIELDS = ("title", "abstract", "author", "keyword")
# A group is a field or "text" (title and abstract: where an unfielded term looks).

# The document's positions. A plain tuple, not a NamedTuple: generated code reads it in every test of
# every candidate clause, and there a NamedTuple's attribute, or an index into one, costs ~25% more
# than an index into a tuple. Generated code gets the numbers; the code that writes it, these names.
TITLE_WORDS: Final = 0  # word sets
AUTHOR_WORDS: Final = 1
KEYWORD_WORDS: Final = 2
TEXT_WORDS: Final = 3  # the title's and the abstract's
TITLE_STRING: Final = 4  # strings: " w w | w ", "|" between two authors or keywords
ABSTRACT_STRING: Final = 5
AUTHOR_STRING: Final = 6
KEYWORD_STRING: Final = 7
TEXT_STRING: Final = 8  # the title's and the abstract's, "|" between them
UPVOTES: Final = 9
Doc = tuple[set[str], set[str], set[str], set[str], str, str, str, str, str, int]
# The positions of the word sets and of the strings, as types: mypy checks the names above against them.
WordsAt = Literal[0, 1, 2, 3]
StringAt = Literal[4, 5, 6, 7, 8]
WORDS_AT: dict[str, WordsAt] = {"title": TITLE_WORDS, "author": AUTHOR_WORDS, "keyword": KEYWORD_WORDS,
                                "text": TEXT_WORDS}  # every group but the abstract
WORD_SETS: tuple[WordsAt, ...] = (TITLE_WORDS, AUTHOR_WORDS, KEYWORD_WORDS, TEXT_WORDS)
WORD_SET_OF: dict[str, WordsAt] = WORDS_AT | {"abstract": TEXT_WORDS}  # a word set holding the group's words
STRING_AT: dict[str, StringAt] = {"title": TITLE_STRING, "abstract": ABSTRACT_STRING, "author": AUTHOR_STRING,
                                  "keyword": KEYWORD_STRING, "text": TEXT_STRING}
SEARCHED = {g: (g,) for g in FIELDS} | {"text": ("title", "abstract")}
WEIGHTS = {"title": 3.0, "abstract": 1.0, "author": 2.0, "keyword": 2.0}
PHRASE_BONUS = 1.5
COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "=": operator.eq}
HitList = list[tuple[str, str, float]]  # (text, field, score weight) in query order


def tokenize(text: str) -> list[str]:
    """Lower-cased words of `text`; anything that is not a letter or digit separates words."""
    if not text.isascii():  # NFKC: ligatures and full-width letters from PDFs become plain ones
        text = unicodedata.normalize("NFKC", text)
    return _WORD.findall(text.lower())


def tokenize_items(items: Sequence[str]) -> list[str]:
    """The words of each item (an author, a keyword) as `tokenize` finds them, "|" between two
    items (and for a "|" in one): one regular-expression call for all, not one per item."""
    text = " | ".join(items)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return _WORD_OR_BAR.findall(text.lower())


def has_word(doc: Doc, group: str, word: str) -> bool:
    """Is `word` one of the words of `group` (a field, or "text") in `doc`?"""
    if group == "abstract":  # text = title + abstract: only a title word needs the string search
        return word in doc[TEXT_WORDS] and (word not in doc[TITLE_WORDS] or f" {word} " in doc[ABSTRACT_STRING])
    return word in doc[WORDS_AT[group]]


def _fielded(group: str, text: str) -> str:
    return text if group == "text" else f"{group}:{text}"


class _Leaf:
    """A term, phrase or prefix: holds when `present` in one of the fields its group searches."""

    __slots__ = ()
    group: str
    bonus = 1.0  # score multiplier of its hits

    @property
    def label(self) -> str:  # the text of its hits
        raise NotImplementedError

    def present(self, doc: Doc, field: str) -> bool:
        raise NotImplementedError

    def evaluate(self, doc: Doc) -> bool:
        return any(self.present(doc, f) for f in SEARCHED[self.group])

    def hits(self, doc: Doc, out: HitList) -> None:
        for field in SEARCHED[self.group]:
            if self.present(doc, field):
                out.append((self.label, field, WEIGHTS[field] * self.bonus))


@dataclass(frozen=True, slots=True)
class Term(_Leaf):
    word: str
    group: str = "text"

    @property
    def label(self) -> str:
        return self.word

    def present(self, doc: Doc, field: str) -> bool:
        return has_word(doc, field, self.word)

    def __str__(self) -> str:
        return _fielded(self.group, self.word)


@dataclass(frozen=True, slots=True)
class Phrase(_Leaf):
    """Consecutive words in one field (one author, one keyword): " a b " inside " x a b y "."""

    words: tuple[str, ...]
    group: str = "text"
    bonus = PHRASE_BONUS

    @property
    def label(self) -> str:
        return " ".join(self.words)

    @property
    def needle(self) -> str:
        return f" {self.label} "

    def present(self, doc: Doc, field: str) -> bool:
        return self.needle in doc[STRING_AT[field]]

    def __str__(self) -> str:
        return _fielded(self.group, f'"{self.label}"')


@dataclass(frozen=True, slots=True)
class Prefix(_Leaf):
    stem: str
    group: str = "text"

    @property
    def label(self) -> str:
        return f"{self.stem}*"

    @property
    def needle(self) -> str:
        return f" {self.stem}"

    def present(self, doc: Doc, field: str) -> bool:
        return self.needle in doc[STRING_AT[field]]

    def __str__(self) -> str:
        return _fielded(self.group, self.label)


@dataclass(frozen=True, slots=True)
class Upvotes:
    op: str
    value: int

    def evaluate(self, doc: Doc) -> bool:
        return COMPARE[self.op](doc[UPVOTES], self.value)

    def hits(self, doc: Doc, out: HitList) -> None:
        """A threshold says nothing about what the paper is about: no hit."""

    def __str__(self) -> str:
        return f"upvotes{self.op}{self.value}"


@dataclass(frozen=True, slots=True)
class Not:
    child: Node

    def evaluate(self, doc: Doc) -> bool:
        return not self.child.evaluate(doc)

    def hits(self, doc: Doc, out: HitList) -> None:
        """Excluded words are never a reason for a match."""

    def __str__(self) -> str:
        return f"NOT {self.child}"


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]

    def evaluate(self, doc: Doc) -> bool:
        return all(c.evaluate(doc) for c in self.children)

    def hits(self, doc: Doc, out: HitList) -> None:
        for c in self.children:
            c.hits(doc, out)

    def __str__(self) -> str:
        return "(" + " AND ".join(map(str, self.children)) + ")"


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]

    def evaluate(self, doc: Doc) -> bool:
        return any(c.evaluate(doc) for c in self.children)

    def hits(self, doc: Doc, out: HitList) -> None:
        for c in self.children:  # only the branches that hold are reasons for the match
            if c.evaluate(doc):
                c.hits(doc, out)

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.children)) + ")"


Node = Term | Phrase | Prefix | Upvotes | Not | And | Or
