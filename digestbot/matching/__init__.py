"""Query language and matcher (README, "Subscriptions").

    parse_query(text) -> AST node | None      raises QuerySyntaxError (a ConfigError)
    query_warnings(text) -> [QueryWarning]     valid, but probably not what was meant (`llm or vlm`)
    Matcher(interests, sample=()).match(papers) -> [Match]      a PaperMatcher, like similar.SimilarityMatcher

Inside: `nodes` (the AST and its reference semantics), `query` (the parser), `compile` (papers to
documents, queries to generated functions), `index` (anchors, the inverted index), `batch`
(queries over a batch's posting bitsets), `matcher` (the whole).
"""
from digestbot.matching.matcher import Interest, Matcher, PaperMatcher
from digestbot.matching.nodes import tokenize
from digestbot.matching.query import QuerySyntaxError, QueryWarning, parse_query, query_warnings

__all__ = ["Interest", "Matcher", "PaperMatcher", "QuerySyntaxError", "QueryWarning", "parse_query", "query_warnings",
           "tokenize"]
