"""Query language and matcher (DESIGN 3.4).

    parse_query(text) -> AST node | None      raises QuerySyntaxError (a ConfigError)
    Matcher(interests).match(papers) -> [Match]
"""
from digestbot.matching.matcher import Interest, Matcher
from digestbot.matching.query import QuerySyntaxError, parse_query, tokenize

__all__ = ["Interest", "Matcher", "QuerySyntaxError", "parse_query", "tokenize"]
