"""The query language (DESIGN 3.4): words, the AST, and a recursive-descent parser.

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary (["AND"] unary)*          juxtaposition is AND
    unary    := ("NOT" | "-") unary | primary
    primary  := field ":" unary | "(" or_expr ")" | word | "a phrase" | prefix* | upvotes>=N

AND/OR/NOT are operators only in upper case; `and` is a plain word. A bare word with inner
punctuation (`KV-cache`) is the phrase of its words, so it matches "kv cache" and vice versa.

AST nodes evaluate a *document*, the tuple `matcher.document` builds once per paper: at GROUP[g]
the word set of group g (None for "abstract": it would cost as much as the text set, and the
string answers), at TEXT + GROUP[g] the group as " w w | w " (phrases, prefixes), at UPVOTES the
upvotes. The fast path (closures, the index) lives in `matcher.py`; the nodes here are the
reference semantics it is tested against.
"""
from __future__ import annotations

import operator
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

from digestbot.errors import ConfigError

_FIELD = re.compile(r"([A-Za-z]+):")
_UPVOTES = re.compile(r"(?i)upvotes(>=|<=|>|<|=)")
_OPERATORS = ("AND", "OR", "NOT")
_WORD_ENDS = frozenset('()"')
_WORD = re.compile(r"[^\W_]+")  # a letter or digit, Unicode-aware; "_" and punctuation split words

FIELDS = ("title", "abstract", "author", "keyword")
GROUPS = FIELDS + ("text",)  # "text" = title and abstract: where an unfielded term looks
GROUP = {g: i for i, g in enumerate(GROUPS)}  # document[GROUP[g]] is the word set of g (not abstract)
TEXT = len(GROUPS)  # document[TEXT + GROUP[g]] is g as " w w | w " (phrases, prefixes)
UPVOTES = 2 * len(GROUPS)  # document[UPVOTES] is the paper's upvotes
SEARCHED = {g: (g,) for g in FIELDS} | {"text": ("title", "abstract")}
WEIGHTS = {"title": 3.0, "abstract": 1.0, "author": 2.0, "keyword": 2.0}
PHRASE_BONUS = 1.5
COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "=": operator.eq}

Doc = Sequence[Any]  # the document tuple described above
HitList = list[tuple[str, str, float]]  # (text, field, score weight) in query order


def tokenize(text: str) -> list[str]:
    """Lower-cased words of `text`; anything that is not a letter or digit separates words."""
    if not text.isascii():  # NFKC: ligatures and full-width letters from PDFs become plain ones
        text = unicodedata.normalize("NFKC", text)
    return _WORD.findall(text.lower())


def has_word(doc: Doc, group: str, word: str) -> bool:
    """Is `word` one of the words of `group` (a field, or "text") in `doc`?"""
    if group == "abstract":  # text = title + abstract: only a title word needs the string search
        return word in doc[GROUP["text"]] and (
            word not in doc[GROUP["title"]] or f" {word} " in doc[TEXT + GROUP["abstract"]])
    return word in doc[GROUP[group]]


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
        return self.needle in doc[TEXT + GROUP[field]]

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
        return self.needle in doc[TEXT + GROUP[field]]

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


Node = Union[Term, Phrase, Prefix, Upvotes, Not, And, Or]


class QuerySyntaxError(ConfigError):
    """A query that does not parse; `str()` shows the query with a caret under the culprit."""

    def __init__(self, message: str, query: str, position: int):
        self.message, self.query, self.position = message, query, position
        shown = "".join(" " if c.isspace() else c for c in query)  # tabs/newlines would shift the caret
        super().__init__(f"{message}\n  {shown}\n  {' ' * position}^")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ( ) AND OR NOT FIELD WORD PREFIX CMP END
    text: str  # as written, for messages
    pos: int
    value: object = None


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c == '"':
            i = _lex_phrase(query, i, tokens)
        elif c == "-" and i + 1 < n and not query[i + 1].isspace():
            tokens.append(_Token("NOT", "-", i))
            i += 1
        else:
            i = _lex_word(query, i, tokens)
    tokens.append(_Token("END", "the end", n))
    return tokens


def _lex_phrase(query: str, i: int, tokens: list[_Token]) -> int:
    end = query.find('"', i + 1)
    if end < 0:
        raise QuerySyntaxError('unterminated quote: expected a closing "', query, i)
    words = tuple(tokenize(query[i + 1:end]))
    if not words:
        raise QuerySyntaxError("empty phrase: expected words between the quotes", query, i)
    tokens.append(_Token("WORD", query[i:end + 1], i, words))
    return end + 1


def _lex_word(query: str, i: int, tokens: list[_Token]) -> int:
    """A bare word, an operator, a `field:` prefix or an `upvotes>=N` comparison."""
    end = i
    while end < len(query) and not query[end].isspace() and query[end] not in _WORD_ENDS:
        end += 1
    raw = query[i:end]
    if field := _FIELD.match(raw):
        name = field.group(1).lower()
        if name not in FIELDS:
            known = ", ".join(f"{f}:" for f in FIELDS)
            raise QuerySyntaxError(f"unknown field {name!r}: the fields are {known} and upvotes>=N",
                                   query, i)
        tokens.append(_Token("FIELD", raw[:field.end()], i, name))
        return i + field.end()  # what follows the colon is lexed on its own: "x y", (x), -x, x*
    if raw in _OPERATORS:
        tokens.append(_Token(raw, raw, i))
    elif cmp := _UPVOTES.match(raw):
        tokens.append(_Token("CMP", raw, i, (cmp.group(1), _number(query, i + cmp.end(), end))))
    elif raw.endswith("*"):
        tokens.append(_Token("PREFIX", raw, i, _stem(query, i, raw)))
    else:
        words = tuple(tokenize(raw))
        if not words:
            raise QuerySyntaxError(f"expected a term: {raw!r} has no letters or digits", query, i)
        tokens.append(_Token("WORD", raw, i, words))
    return end


def _number(query: str, start: int, end: int) -> int:
    digits = query[start:end]
    if not (digits.isascii() and digits.isdigit()):
        raise QuerySyntaxError("expected a whole number after the comparison, e.g. upvotes>=10",
                               query, start)
    return int(digits)


def _stem(query: str, i: int, raw: str) -> str:
    words = tokenize(raw[:-1])
    if len(words) != 1:
        what = "a single word" if words else "letters or digits"
        raise QuerySyntaxError(f"expected {what} before * (a prefix is one word)", query, i)
    return words[0]


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.tokens = _lex(query)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        self.i += 1
        return self.tokens[self.i - 1]

    def fail(self, message: str, token: _Token) -> QuerySyntaxError:
        return QuerySyntaxError(message, self.query, token.pos)

    def parse(self) -> Node:
        node = self.or_expr("text")
        if self.peek().kind != "END":  # only a stray ")" stops or_expr early
            raise self.fail('unexpected ")": there is no "(" for it to close', self.peek())
        return node

    def or_expr(self, group: str) -> Node:
        parts = [self.and_expr(group)]
        while self.peek().kind == "OR":
            self.take()
            parts.append(self.and_expr(group))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_expr(self, group: str) -> Node:
        parts = [self.unary(group)]
        while self.peek().kind not in ("OR", ")", "END"):
            if self.peek().kind == "AND":
                self.take()
            parts.append(self.unary(group))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, group: str) -> Node:
        if self.peek().kind == "NOT":
            self.take()
            return Not(self.unary(group))
        return self.primary(group)

    def primary(self, group: str) -> Node:
        tok = self.take()
        if tok.kind == "FIELD":
            return self.unary(str(tok.value))  # an inner field overrides the outer one
        if tok.kind == "(":
            return self.parenthesised(tok, group)
        if tok.kind == "CMP":
            op, value = tok.value  # type: ignore[misc]
            return Upvotes(op, value)
        if tok.kind == "PREFIX":
            return Prefix(str(tok.value), group)
        if tok.kind == "WORD":
            words: tuple[str, ...] = tok.value  # type: ignore[assignment]
            return Term(words[0], group) if len(words) == 1 else Phrase(words, group)
        raise self.missing_operand(tok)

    def parenthesised(self, opening: _Token, group: str) -> Node:
        if self.peek().kind == ")":
            raise self.fail('empty parentheses: expected a term between "(" and ")"', self.peek())
        node = self.or_expr(group)
        if self.peek().kind != ")":
            raise self.fail(f'expected ")" to close the "(" at column {opening.pos + 1}', self.peek())
        self.take()
        return node

    def missing_operand(self, tok: _Token) -> QuerySyntaxError:
        prev = self.tokens[self.i - 2] if self.i >= 2 else None
        where = f"after {prev.text}" if prev else "at the start of the query"
        found = "" if tok.kind == "END" else f", found {tok.text}"
        return self.fail(f'expected a term or "(" {where}{found}', tok)


def parse_query(query: str) -> Node | None:
    """Parse `query` into an AST; None for a blank query (the matcher reads it as "everything").

    Raises QuerySyntaxError pointing at the offending character.
    """
    if not query.strip():
        return None
    return _Parser(query).parse()
