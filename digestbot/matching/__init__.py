"""Query language and matcher (README, "Subscriptions").

    parse_query(text) -> AST node | None      raises QuerySyntaxError (a ConfigError)
    Matcher(interests, sample=()).match(papers) -> [Match]

Inside: `nodes` (the AST and its reference semantics), `query` (the parser), `compile` (papers to
documents, queries to generated functions), `index` (anchors, the inverted index), `batch`
(queries over a batch's posting bitsets), `matcher` (the whole).
"""
from digestbot.matching.matcher import Interest, Matcher
from digestbot.matching.query import QuerySyntaxError, parse_query, tokenize

__all__ = ["Interest", "Matcher", "QuerySyntaxError", "parse_query", "tokenize"]
