"""The query language: words, parsing, precedence, fields, evaluation and syntax errors."""
from __future__ import annotations

import pytest

from digestbot.errors import ConfigError
from digestbot.matching import QuerySyntaxError, parse_query, tokenize
from digestbot.matching.compile import document
from digestbot.matching.nodes import tokenize_items
from digestbot.matching.query import MAX_DEPTH, And, Not, Or, Phrase, Prefix, Term, Upvotes
from digestbot.models import Paper


def doc(title="", abstract="", authors=(), keywords=(), upvotes=0):
    return document(Paper(title=title, abstract=abstract, authors=tuple(authors),
                          ai_keywords=tuple(keywords), upvotes=upvotes))


def matches(query: str, **paper) -> bool:
    return parse_query(query).evaluate(doc(**paper))


# --- words -----------------------------------------------------------------------------------

def test_tokenize_splits_on_anything_not_a_letter_or_digit():
    assert tokenize("KV-cache, LLM_inference (v2)!") == ["kv", "cache", "llm", "inference", "v2"]


def test_tokenize_is_unicode_aware_and_folds_compatibility_forms():
    assert tokenize("Über-Modell für 3D") == ["über", "modell", "für", "3d"]
    assert tokenize("ﬁne-tuning") == ["fine", "tuning"]  # the "fi" ligature of PDF extractions


# --- structure and precedence ----------------------------------------------------------------

@pytest.mark.parametrize("query, shape", [
    ("a b OR c", "((a AND b) OR c)"),
    ("a OR b c", "(a OR (b AND c))"),
    ("a AND b OR c AND d", "((a AND b) OR (c AND d))"),
    ("(a OR b) c", "((a OR b) AND c)"),
    ("NOT a b", "(NOT a AND b)"),
    ("NOT a OR b", "(NOT a OR b)"),
    ("NOT (a OR b)", "NOT (a OR b)"),
    ("-a b", "(NOT a AND b)"),
    ("a -b", "(a AND NOT b)"),
    ("a --b", "(a AND NOT NOT b)"),
    ('inference AND (llm OR "language model") NOT survey',
     '(inference AND (llm OR "language model") AND NOT survey)'),
])
def test_precedence_is_not_then_and_then_or(query, shape):
    assert str(parse_query(query)) == shape


def test_juxtaposition_is_and():
    assert parse_query("llm inference") == parse_query("llm AND inference") == And(
        (Term("llm"), Term("inference")))


def test_lowercase_keywords_are_plain_terms():
    assert parse_query("and") == Term("and")
    assert parse_query("a or b not c") == And(tuple(Term(w) for w in ("a", "or", "b", "not", "c")))
    assert parse_query("rock And roll") == And((Term("rock"), Term("and"), Term("roll")))


def test_case_insensitive_terms():
    assert parse_query("LLM") == Term("llm")
    assert matches("llm", title="Small LLMs and an LLM")


def test_hyphen_inside_a_word_is_a_phrase_not_a_negation():
    assert parse_query("GPT-4") == Phrase(("gpt", "4"))
    assert parse_query("GPT-4 -survey") == And((Phrase(("gpt", "4")), Not(Term("survey"))))


def test_blank_query_means_no_constraint():
    assert parse_query("") is None
    assert parse_query("  \t ") is None


# --- phrases, punctuation, prefixes ----------------------------------------------------------

def test_kv_cache_and_quoted_kv_cache_are_the_same_phrase():
    assert parse_query("KV-cache") == parse_query('"kv cache"') == Phrase(("kv", "cache"))
    for text in ("Compressing the KV-cache", "a kv cache", "KV cache!", "(kv)-(cache)"):
        assert matches("KV-cache", title=text), text
        assert matches('"kv cache"', title=text), text


def test_phrase_needs_consecutive_words():
    assert not matches('"kv cache"', title="cache kv")
    assert not matches('"kv cache"', title="kv of the cache")
    assert not matches('"kv cache"', title="kvx cache")


def test_phrase_does_not_span_title_and_abstract_or_two_authors():
    assert not matches('"kv cache"', title="about kv", abstract="cache is fast")
    assert not matches('author:"smith alice"', authors=["John Smith", "Alice Brown"])
    assert matches('author:"alice brown"', authors=["John Smith", "Alice Brown"])


def test_items_are_tokenised_as_each_alone_with_a_bar_between():
    items = ["John Smith", "Ｆｕｌｌ-Width ﬁne", "", "O'Brien, Jr."]
    expected = [w for item in items for w in ["|", *tokenize(item)]][1:]
    assert tokenize_items(items) == expected
    assert tokenize_items([]) == []


def test_single_quoted_word_is_a_term():
    assert parse_query('"LLM"') == Term("llm")


def test_prefix_matches_words_starting_with_it():
    assert parse_query("quantiz*") == Prefix("quantiz")
    assert matches("quantiz*", abstract="We apply 4-bit quantization.")
    assert matches("quantiz*", title="Quantized LLMs")
    assert matches("quantiz*", title="quantiz")
    assert not matches("quantiz*", title="dequantized weights")  # a prefix, not a substring
    assert not matches("quantiz*", title="quanti")


# --- fields ----------------------------------------------------------------------------------

def test_unfielded_terms_search_title_and_abstract_only():
    assert matches("smith", title="Smith normal form")
    assert matches("smith", abstract="after Smith")
    assert not matches("smith", authors=["John Smith"])
    assert not matches("nlp", keywords=["nlp"])


@pytest.mark.parametrize("field, paper", [
    ("title", {"title": "Speculative decoding"}),
    ("abstract", {"abstract": "We use speculative decoding."}),
    ("author", {"authors": ["Ada Speculative"]}),
    ("keyword", {"keywords": ["speculative sampling"]}),
])
def test_each_field_searches_only_itself(field, paper):
    assert matches(f"{field}:speculative", **paper)
    for other in ("title", "abstract", "author", "keyword"):
        if other != field:
            assert not matches(f"{other}:speculative", **paper), other


def test_field_names_are_case_insensitive():
    assert parse_query("Title:LLM") == Term("llm", "title")


def test_keyword_field_covers_ai_keywords_and_arxiv_categories():
    paper = {"keywords": ["speculative decoding", "cs.CL"]}
    assert parse_query("keyword:cs.CL") == Phrase(("cs", "cl"), "keyword")
    assert matches("keyword:cs.CL", **paper)
    assert matches('keyword:"speculative decoding"', **paper)
    assert not matches('keyword:"decoding cs"', **paper)  # not across two keywords


def test_field_applies_to_a_phrase_and_to_a_group():
    assert parse_query('title:"kv cache"') == Phrase(("kv", "cache"), "title")
    assert parse_query("title:(a OR b)") == Or((Term("a", "title"), Term("b", "title")))
    assert parse_query("title:-a") == Not(Term("a", "title"))
    assert parse_query("title:quant*") == Prefix("quant", "title")
    assert parse_query("title:(a abstract:b)") == And((Term("a", "title"), Term("b", "abstract")))
    assert matches("title:(llm OR vlm)", title="A VLM", abstract="llm")
    assert not matches("title:(llm OR gpt)", title="A VLM", abstract="llm")


@pytest.mark.parametrize("query, yes, no", [
    ("upvotes>=10", [10, 11], [9]),
    ("upvotes>10", [11], [10]),
    ("upvotes<=10", [10, 0], [11]),
    ("upvotes<10", [9], [10]),
    ("upvotes=10", [10], [9, 11]),
    ("UPVOTES>=3", [3], [2]),
])
def test_upvote_comparisons(query, yes, no):
    assert isinstance(parse_query(query), Upvotes)
    for n in yes:
        assert matches(query, upvotes=n), n
    for n in no:
        assert not matches(query, upvotes=n), n


def test_not_excludes():
    assert matches("llm NOT survey", title="LLM inference")
    assert not matches("llm NOT survey", title="LLM inference: a survey")
    assert not matches("llm -survey", title="LLM inference", abstract="This survey")


# --- syntax errors ---------------------------------------------------------------------------

def error(query: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    return caught.value


def test_error_message_shows_the_query_and_a_caret():
    e = error("inference AND (llm OR")
    assert str(e) == ('expected a term or "(" after OR\n'
                      "  inference AND (llm OR\n"
                      "                       ^")
    assert (e.query, e.position) == ("inference AND (llm OR", 21)
    assert isinstance(e, ConfigError)  # a bad query is a config error


@pytest.mark.parametrize("query, position, says", [
    ("(llm OR gpt", 11, 'expected ")" to close the "(" at column 1'),
    ("a (b (c) d", 10, 'expected ")" to close the "(" at column 3'),
    ("llm) OR gpt", 3, 'unexpected ")"'),
    ('title:"kv cache', 6, "unterminated quote"),
    ("llm AND", 7, 'expected a term or "(" after AND'),
    ("llm OR", 6, "after OR"),
    ("llm NOT", 7, "after NOT"),
    ("OR llm", 0, "at the start of the query, found OR"),
    ("llm AND OR gpt", 8, "after AND, found OR"),
    ("llm AND )", 8, "after AND, found )"),
    ("llm ()", 5, "empty parentheses"),
    ("upvotes>=x", 9, "expected a whole number"),
    ("upvotes>", 8, "expected a whole number"),
    ("llm foo:bar", 4, "unknown field 'foo': the fields are title:, abstract:, author:, keyword:"),
    ('""', 0, "empty phrase"),
    ("llm &", 4, "'&' has no letters or digits"),
    ("*", 0, "expected letters or digits before *"),
    ("kv-cach*", 0, "expected a single word before *"),
    ("title:", 6, "after title:"),
])
def test_syntax_errors_point_at_the_culprit(query, position, says):
    e = error(query)
    assert e.position == position
    assert says in e.message
    lines = str(e).splitlines()
    assert lines == [e.message, f"  {query}", " " * (2 + position) + "^"]


def test_caret_stays_aligned_when_the_query_has_tabs_and_newlines():
    lines = str(error("llm\tAND\n(")).splitlines()
    assert lines[1:] == ["  llm AND (", " " * 11 + "^"]


def test_nesting_deeper_than_the_limit_is_a_clear_error_not_a_crash():
    deepest = "(" * (MAX_DEPTH - 1) + "llm" + ")" * (MAX_DEPTH - 1)
    assert parse_query(deepest) == Term("llm")
    e = error("(" * 200 + "llm" + ")" * 200)
    assert "nested too deeply: at most 32 levels" in e.message
    assert e.position == MAX_DEPTH  # the first "(" past the limit
    assert "nested too deeply" in error("NOT " * 40 + "llm").message
