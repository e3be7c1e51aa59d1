"""The query language (README, "Subscriptions"): a lexer and a recursive-descent parser into `nodes`.

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary (["AND"] unary)*          juxtaposition is AND
    unary    := ("NOT" | "-") unary | primary
    primary  := field ":" unary | "(" or_expr ")" | word | "a phrase" | prefix* | upvotes>=N

AND/OR/NOT are operators only in upper case; `and` is a plain word. A bare word with inner
punctuation (`KV-cache`) is the phrase of its words, so it matches "kv cache" and vice versa.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from digestbot.errors import ConfigError
from digestbot.matching.nodes import FIELDS, And, Node, Not, Or, Phrase, Prefix, Term, Upvotes, tokenize

_FIELD = re.compile(r"([A-Za-z]+):")
_UPVOTES = re.compile(r"(?i)upvotes(>=|<=|>|<|=)")
_OPERATORS = ("AND", "OR", "NOT")
_WORD_ENDS = frozenset('()"')


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
    name: str = ""  # FIELD: the field; PREFIX: the stem; CMP: the operator
    words: tuple[str, ...] = ()  # WORD: its words (a phrase's, or a bare word's: `KV-cache`)
    number: int = 0  # CMP: the number compared with


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
    tokens.append(_Token("WORD", query[i:end + 1], i, words=words))
    return end + 1


def _lex_word(query: str, i: int, tokens: list[_Token]) -> int:
    """A bare word, an operator, a `field:` prefix or an `upvotes>=N` comparison."""
    # The field is matched before the word's end is looked for: only the prefix is consumed, so
    # scanning the whole word first made `title:title:title:...` quadratic (each prefix rescanned
    # the rest). A match holds only letters and ":", so it never runs past the word's end.
    if field := _FIELD.match(query, i):
        name = field.group(1).lower()
        if name not in FIELDS:
            known = ", ".join(f"{f}:" for f in FIELDS)
            raise QuerySyntaxError(f"unknown field {name!r}: the fields are {known} and upvotes>=N",
                                   query, i)
        tokens.append(_Token("FIELD", field.group(0), i, name=name))
        return field.end()  # what follows the colon is lexed on its own: "x y", (x), -x, x*
    end = i
    while end < len(query) and not query[end].isspace() and query[end] not in _WORD_ENDS:
        end += 1
    raw = query[i:end]
    if raw in _OPERATORS:
        tokens.append(_Token(raw, raw, i))
    elif cmp := _UPVOTES.match(raw):
        tokens.append(_Token("CMP", raw, i, name=cmp.group(1), number=_number(query, i + cmp.end(), end)))
    elif raw.endswith("*"):
        tokens.append(_Token("PREFIX", raw, i, name=_stem(query, i, raw)))
    else:
        words = tuple(tokenize(raw))
        if not words:
            raise QuerySyntaxError(f"expected a term: {raw!r} has no letters or digits", query, i)
        tokens.append(_Token("WORD", raw, i, words=words))
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


MAX_DEPTH = 32  # nested parentheses, NOTs and fields: more says nothing a reader could follow


class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.tokens = _lex(query)
        self.i = 0
        self.depth = 0

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
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested too deeply: at most {MAX_DEPTH} levels of parentheses, NOT and"
                            " fields", self.peek())
        try:
            if self.peek().kind == "NOT":
                self.take()
                return Not(self.unary(group))
            return self.primary(group)
        finally:
            self.depth -= 1

    def primary(self, group: str) -> Node:
        tok = self.take()
        if tok.kind == "FIELD":
            return self.unary(tok.name)  # an inner field overrides the outer one
        if tok.kind == "(":
            return self.parenthesised(tok, group)
        if tok.kind == "CMP":
            return Upvotes(tok.name, tok.number)
        if tok.kind == "PREFIX":
            return Prefix(tok.name, group)
        if tok.kind == "WORD":
            words = tok.words
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


_WORD_OPERATORS = {"and": ("AND", "write AND, or leave it out (terms side by side must all appear)"),
                   "or": ("OR", "write OR to match papers with either term"),
                   "not": ("NOT", "write NOT to leave out the papers with the term after it")}
_CAPITALS = re.compile(r"[A-Z]{2,5}")


@dataclass(frozen=True, slots=True)
class QueryWarning:
    """A query that parses but cannot mean what was typed: `llm or vlm` searches for the word "or" too
    (operators are upper case), `speculative ANDD decoding` for the word "andd". `str()` shows the query
    with a caret under the word, as QuerySyntaxError does."""
    message: str
    query: str
    position: int

    def __str__(self) -> str:
        shown = "".join(" " if c.isspace() else c for c in self.query)
        return f"{self.message}\n  {shown}\n  {' ' * self.position}^"


def query_warnings(query: str) -> list[QueryWarning]:
    """What in a valid query is probably not what was meant: a lowercase `and`/`or`/`not` between two
    terms (a plain word: every paper must contain it, and most do not say "or"), and an all-caps word
    that looks like an operator but is not one (ANDD, NOR, XOR). Quoting the word ("or") says it is
    meant as a word and silences the warning. Acronyms (LLM, RAG, ANN) are left alone: only words within
    one letter's change of an operator are taken for a mistyped one. Raises QuerySyntaxError as
    parse_query does."""
    import difflib

    if not query.strip():
        return []
    tokens = _Parser(query).tokens  # lexing alone; the caller parses (this raises what parsing would)
    parse_query(query)
    found: list[QueryWarning] = []
    for number, tok in enumerate(tokens[:-1]):  # the last is END
        if tok.kind != "WORD" or tok.text.startswith('"'):
            continue
        between = 0 < number < len(tokens) - 2
        if tok.text.lower() in _WORD_OPERATORS and between:
            fix = _WORD_OPERATORS[tok.text.lower()][1]
            found.append(QueryWarning(f"{tok.text!r} is searched for as a word (operators are upper case): {fix}; "
                                      f"\"{tok.text}\" in quotes if you mean the word", query, tok.pos))
        elif _CAPITALS.fullmatch(tok.text) and (near := difflib.get_close_matches(tok.text, _OPERATORS, 1, 0.75)):
            found.append(QueryWarning(
                f"{tok.text!r} is not an operator (they are AND, OR, NOT): it is searched for as a word; did you "
                f"mean {near[0]}? (\"{tok.text}\" in quotes if you mean the word)", query, tok.pos))
    return found


def parse_query(query: str) -> Node | None:
    """Parse `query` into an AST; None for a blank query (the matcher reads it as "everything").

    Raises QuerySyntaxError pointing at the offending character.
    """
    if not query.strip():
        return None
    return _Parser(query).parse()
