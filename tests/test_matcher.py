"""The matcher: what matches, the hits it reports, scores, order, and index == naive loop."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestbot import config as config_module
from digestbot.app import build_matcher
from digestbot.matching import Interest, Matcher, QuerySyntaxError, parse_query
from digestbot.matching.compile import compile_explain, compile_node, document
from digestbot.matching.index import Index, Rarity, anchors
from digestbot.matching.nodes import ABSTRACT_STRING, AUTHOR_WORDS, KEYWORD_WORDS, TEXT_WORDS, TITLE_WORDS
from digestbot.models import Hit, Paper
from digestbot.relevance import LearningMatcher
from digestbot.store import Store

SURVEY = Paper(title="A survey of LLM inference", abstract="We review KV-cache tricks.",
               arxiv_id="2401.00001", authors=("Ada Lovelace",), ai_keywords=("cs.CL",), upvotes=5)
SPEC = Paper(title="Speculative decoding for LLM inference",
             abstract="Draft models and a kv cache make inference fast.", arxiv_id="2401.00002",
             authors=("Alan Turing", "Grace Hopper"), ai_keywords=("speculative decoding", "cs.LG"),
             upvotes=40)
VISION = Paper(title="Vision transformers at scale", abstract="Images.", arxiv_id="2401.00003",
               upvotes=900)
PAPERS = [SURVEY, SPEC, VISION]


def both_paths(matcher: Matcher, papers) -> list:
    """`match` with batch (bitset) evaluation and with paper-at-a-time evaluation: equal."""
    matcher.batch_min = 1
    batched = matcher.match(papers)
    matcher.batch_min = 10**9
    assert matcher.match(papers) == batched
    return batched


def run(*interests: Interest, papers=PAPERS):
    matcher = Matcher(interests)
    result = both_paths(matcher, papers)
    assert result == matcher.match_naive(papers)
    return result


def pairs(matches):
    return [(m.subscription_id, m.paper.key) for m in matches]


def test_empty_query_matches_every_paper_scored_by_upvotes_only():
    result = run(Interest("everything"))
    assert pairs(result) == [("everything", p.key) for p in PAPERS]
    assert [m.hits for m in result] == [(), (), ()]
    assert [m.score for m in result] == [0.0005, 0.004, 0.09]


def test_not_excludes_and_its_terms_are_never_hits():
    result = run(Interest("alice", "inference NOT survey"))
    assert pairs(result) == [("alice", "2401.00002")]
    assert result[0].hits == (Hit("inference", "title"), Hit("inference", "abstract"))


def test_hits_say_what_occurred_where():
    (m,) = run(Interest("s", '"speculative decoding" author:hopper keyword:cs.LG llm'),
               papers=[SPEC])
    assert m.hits == (Hit("speculative decoding", "title"), Hit("hopper", "author"),
                      Hit("cs lg", "keyword"), Hit("llm", "title"))


def test_only_or_branches_that_hold_give_hits():
    (m,) = run(Interest("s", "(draft AND vision) OR transformers OR kv*"), papers=[SPEC])
    assert m.hits == (Hit("kv*", "abstract"),)  # "draft" occurred, but its branch failed


def test_prefix_hit_and_phrase_across_punctuation():
    result = run(Interest("s", "KV-cache"))
    assert pairs(result) == [("s", SURVEY.key), ("s", SPEC.key)]
    assert {m.hits for m in result} == {(Hit("kv cache", "abstract"),)}


def test_topics_are_ored_with_the_query_and_reported():
    eff = ("efficient-inference", '"speculative decoding" OR "kv cache" OR quantiz*')
    result = run(Interest("alice", "vision", topics=(eff,)))
    assert pairs(result) == [("alice", SURVEY.key), ("alice", SPEC.key), ("alice", VISION.key)]
    assert result[1].hits == (
        Hit("efficient-inference", "topic", "efficient-inference"),
        Hit("speculative decoding", "title", "efficient-inference"),
        Hit("kv cache", "abstract", "efficient-inference"))
    assert result[2].hits == (Hit("vision", "title"),)


def test_a_word_found_by_the_query_and_by_two_topics_is_three_hits():
    (m,) = run(Interest("s", "speculative", topics=(("t1", "speculative"), ("t2", "speculat*"))),
               papers=[SPEC])
    assert m.hits == (Hit("speculative", "title"),
                      Hit("t1", "topic", "t1"), Hit("speculative", "title", "t1"),
                      Hit("t2", "topic", "t2"), Hit("speculat*", "title", "t2"))
    assert m.score == 3 + 3 + 3 + 0.004


def test_a_term_repeated_in_a_query_is_one_hit():
    (m,) = run(Interest("s", "llm OR (llm draft) OR title:llm"), papers=[SPEC])
    assert m.hits == (Hit("llm", "title"), Hit("draft", "abstract"))
    assert m.score == 3 + 1 + 0.004


def test_blank_query_with_topics_matches_only_through_the_topics():
    result = run(Interest("bob", "", topics=(("vit", "vision"),)))
    assert pairs(result) == [("bob", VISION.key)]


def test_score_weighs_fields_phrases_and_upvotes():
    title, abstract = Paper(title="pruning", upvotes=0), Paper(title="x", abstract="pruning")
    (t,), (a,) = run(Interest("s", "pruning"), papers=[title]), run(Interest("s", "pruning"),
                                                                     papers=[abstract])
    assert (t.score, a.score) == (3.0, 1.0)
    (p,) = run(Interest("s", '"kv cache"'), papers=[Paper(title="kv cache")])
    assert p.score == 4.5
    (kw,) = run(Interest("s", "keyword:cs author:ada"), papers=[SURVEY])
    assert kw.score == 2 + 2 + 0.0005
    low, high = Paper(title="pruning", upvotes=3), Paper(title="pruning", upvotes=5000)
    scores = [m.score for m in run(Interest("s", "pruning"), papers=[low, high])]
    assert scores == [3.0003, 3.1]  # upvotes only break ties, capped at 1000


def test_order_is_paper_then_interest():
    result = run(Interest("b", "inference"), Interest("a", "llm"), Interest("c", "vision"))
    assert pairs(result) == [("b", SURVEY.key), ("a", SURVEY.key), ("b", SPEC.key),
                             ("a", SPEC.key), ("c", VISION.key)]


def test_an_and_across_fields_needs_every_field():
    # Terms of different word sets (title, author, keyword, text) in one AND: each must hold.
    # The batch path once kept only the last set's papers.
    queries = ["keyword:cs.lg inference", "title:survey author:turing", "author:lovelace cache",
               "keyword:cs.cl title:speculative", "title:vision images upvotes>=100 keyword:cs.lg"]
    interests = [Interest(f"q{n}", q) for n, q in enumerate(queries)]
    assert [(m.subscription_id, m.paper.arxiv_id) for m in run(*interests)] == [
        ("q2", "2401.00001"), ("q0", "2401.00002")]


def test_huge_and_deep_queries_compile_and_agree_on_both_paths():
    # Queries become generated Python; thousands of ORed or ANDed words, and the deepest nesting
    # the parser allows, must still compile (Python's compiler recurses per operator and paren).
    wide_or = " OR ".join(["speculative", *(f"w{i}" for i in range(3000))])
    wide_and = " ".join(["inference", "llm", *(f"title:w{i}" for i in range(3000))])
    wide_phrases = " OR ".join(['"kv cache"', *(f'"llm w{i}"' for i in range(2000))])
    deep = "inference"
    for level in range(12):  # 30 levels of parentheses and NOTs, alternating AND and OR
        deep = f"(llm OR NOT (vision {deep}))" if level % 2 else f"(inference ({deep} OR w{level}))"
    interests = [Interest("or", wide_or), Interest("and", wide_and),
                 Interest("phrases", wide_phrases), Interest("deep", deep)]
    assert sorted((m.subscription_id, m.paper.arxiv_id) for m in run(*interests)) == [
        ("deep", "2401.00001"), ("deep", "2401.00002"), ("deep", "2401.00003"),  # NOT (vision ...)
        ("or", "2401.00002"), ("phrases", "2401.00001"), ("phrases", "2401.00002")]


def test_unanchored_queries_are_still_evaluated():
    result = run(Interest("popular", "upvotes>=40"), Interest("no-llm", "NOT llm"))
    assert pairs(result) == [("popular", SPEC.key), ("popular", VISION.key), ("no-llm", VISION.key)]


def test_upvote_thresholds_are_anchors():
    """`upvotes>=40` is anchored by "at least 20" (a step of the index's ladder at or below 40):
    papers with fewer are never candidates, and the query still decides exactly."""
    matcher = Matcher([Interest("popular", "upvotes>=40"), Interest("exact", "upvotes=40"),
                       Interest("over", "upvotes>39 speculative")])
    low, twenty, forty = (Paper(title="speculative", upvotes=n) for n in (5, 20, 40))
    assert matcher.candidates(document(low)) == set()
    assert len(matcher.candidates(document(twenty))) == 3
    assert pairs(matcher.match([low, twenty, forty])) == [
        ("popular", forty.key), ("exact", forty.key), ("over", forty.key)]
    matcher.batch_min = 1
    assert pairs(matcher.match([low, twenty, forty])) == [
        ("popular", forty.key), ("exact", forty.key), ("over", forty.key)]


def test_documents_for_the_index_keep_only_the_words_that_can_matter():
    """A word no clause looks up, and that starts no clause's prefix, is left out of the word
    sets (not of the strings, which phrases and prefixes search); matches are unchanged, which
    the property test below checks against the naive loop's whole documents."""
    index = Index(Rarity())
    index.add(0, parse_query('speculative "kv cache" title:quantiz* author:hopper'))
    index.freeze()
    paper = Paper(title="Quantized speculative decoding", abstract="We quantize the KV cache.",
                  authors=("Grace Hopper", "Alan Turing"), ai_keywords=("cs.LG",))
    doc = index.document(paper)
    assert doc[TEXT_WORDS] == {"quantized", "speculative", "quantize", "kv", "cache"}
    assert doc[TITLE_WORDS] == {"quantized", "speculative"}
    assert doc[AUTHOR_WORDS] == {"hopper"} and doc[KEYWORD_WORDS] == set()
    assert doc[ABSTRACT_STRING] == document(paper)[ABSTRACT_STRING]
    assert document(paper)[TEXT_WORDS] >= {"decoding", "we", "the"}  # whole without the index


def test_shared_topics_are_evaluated_once_per_paper():
    topic = ("t", "inference")
    matcher = Matcher([Interest(f"s{i}", topics=(topic,)) for i in range(50)])
    assert len(matcher._texts) == 1
    assert len(matcher.match([SPEC])) == 50


def test_index_skips_interests_whose_anchor_words_are_absent():
    matcher = Matcher([Interest(f"s{i}", f"hydrodynamics{i} inference") for i in range(100)]
                      + [Interest("spec", "speculative llm")])
    assert len(matcher.candidates(document(SPEC))) == 1
    assert pairs(matcher.match([SPEC])) == [("spec", SPEC.key)]



def test_a_phrase_and_a_word_are_anchored_by_a_key_of_each():
    """A phrase's words come together: a paper with "speculative" mostly has "decoding" too, so
    anchoring `"speculative decoding" hopper` by those two lets every paper on speculative
    decoding through. The index pairs the rarest key with one of the *other* child instead."""
    rare = {"speculative": 0.001, "decoding": 0.002, "hopper": 0.01}
    rarity = lambda key: rare.get(key[1], 0.5)  # noqa: E731
    (keys,) = anchors(parse_query('"speculative decoding" hopper'), rarity)
    assert [what for _, what in keys] == ["speculative", "hopper"]
    (keys,) = anchors(parse_query('title:hopper abstract:"speculative decoding"'), rarity)
    assert [what for _, what in keys] == ["speculative", "hopper"]
    both = anchors(parse_query('hopper AND (kv OR "speculative decoding")'), rarity)
    assert sorted(tuple(what for _, what in keys) for keys in both) == [("hopper", "kv"), ("speculative", "hopper")]
    # an author prefix is no set key (it is searched for in a string): the word anchors the AND
    (keys,) = anchors(parse_query("author:hop* speculative"), rarity)
    assert keys[0] == (TEXT_WORDS, "speculative")

def test_bad_query_fails_when_the_matcher_is_built():
    with pytest.raises(QuerySyntaxError):
        Matcher([Interest("ok", "llm"), Interest("bad", "llm AND")])
    with pytest.raises(QuerySyntaxError):
        Matcher([Interest("ok", "llm", topics=(("t", "(x"),))])


def test_the_daemons_matcher_learns_word_rarity_from_stored_papers(tmp_path):
    """Rarity only picks faster index keys; the daemon takes it from recently stored papers."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_tables()
    with store.write() as w:
        w.record_papers("hf", PAPERS, datetime(2026, 11, 20, tzinfo=UTC))
    config = config_module.loads('[[sources]]\nname = "hf"\nkind = "hf_daily"\n\n[[subscriptions]]\n'
                                 'name = "Alice"\nquery = "inference llm"\nemail = ["a@example.org"]\n',
                                 tmp_path / "config.toml")
    matcher = build_matcher(config, store)
    assert isinstance(matcher, LearningMatcher)  # Alice may learn from votes: the query matcher is inside it
    assert matcher.base._index.rarity.n == len(PAPERS)
    assert pairs(matcher.match(PAPERS)) == [("alice", SURVEY.key), ("alice", SPEC.key)]


# --- property: the index never changes the result -------------------------------------------

VOCAB = ["llm", "kv", "cache", "inference", "speculative", "decoding", "quant", "quantization",
         "survey", "and", "vision", "smith", "cs", "cl", "a", "q"]
FIELD = st.sampled_from(["", "title:", "abstract:", "author:", "keyword:"])
UPVOTES = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 49, 50, 51, 999, 1000, 1001, 5000])
word = st.sampled_from(VOCAB)
words = st.lists(word, min_size=1, max_size=3)
atom = st.one_of(
    word,
    st.builds(lambda f, w: f + w, FIELD, word),
    st.builds(lambda f, ws: f + '"' + " ".join(ws) + '"', FIELD, words),
    st.builds(lambda ws: "-".join(ws).upper(), st.lists(word, min_size=2, max_size=3)),  # KV-CACHE
    st.builds(lambda f, w, n: f + w[:n] + "*", FIELD, word, st.integers(1, 4)),
    st.builds(lambda op, n: f"upvotes{op}{n}", st.sampled_from([">=", ">", "<=", "<", "="]),
              UPVOTES),
)
query = st.recursive(atom, lambda q: st.one_of(
    st.builds(lambda a, b: f"{a} {b}", q, q),
    st.builds(lambda a, b: f"{a} AND {b}", q, q),
    st.builds(lambda a, b: f"{a} OR {b}", q, q),
    st.builds(lambda a: f"NOT {a}", q),
    st.builds(lambda a: f"-({a})", q),
    st.builds(lambda f, a: f"{f}({a})", FIELD, q),
), max_leaves=6)
text = st.lists(st.tuples(word, st.sampled_from([" ", "-", ", ", "_", " (", ". "])),
                max_size=8).map(lambda ps: "".join(w.capitalize() + s for w, s in ps))
paper = st.builds(
    lambda t, a, au, kw, up: Paper(title=t, abstract=a, authors=tuple(au), ai_keywords=tuple(kw),
                                   upvotes=up),
    text, text, st.lists(text, max_size=2), st.lists(text, max_size=3), UPVOTES)
interest = st.builds(
    lambda i, q, ts: Interest(f"s{i}", q, tuple((f"t{n}", t) for n, t in enumerate(ts))),
    st.integers(0, 3), st.one_of(st.just(""), query), st.lists(query, max_size=2))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(interest, min_size=1, max_size=6), st.lists(paper, min_size=1, max_size=5),
       st.lists(paper, max_size=3))
def test_indexed_match_equals_naive_loop(interests, papers, sample):
    matcher = Matcher(interests, sample)  # a sample changes the anchors, never the result
    naive = matcher.match_naive(papers)
    for batch_min in (1, 10**9):  # evaluated over the batch (bitsets), and paper at a time
        matcher.batch_min = batch_min
        fast = matcher.match(papers)
        assert [(m.subscription_id, m.paper.key, m.hits, m.score) for m in fast] == \
            [(m.subscription_id, m.paper.key, m.hits, m.score) for m in naive]
        assert fast == naive


@settings(max_examples=200, deadline=None)
@given(query, paper)
def test_compiled_functions_agree_with_the_ast(q, p):
    node, doc = parse_query(q), document(p)
    assert compile_node(node)(doc) == node.evaluate(doc)
    if node.evaluate(doc):
        reference: list = []
        node.hits(doc, reference)
        expected = {Hit(text, field, "t"): weight for text, field, weight in reference}
        pairs = ((Hit("t", "topic", "t"), 0.0), *expected.items())
        assert compile_explain(node, "t")(doc) == (tuple(h for h, _ in pairs), sum(w for _, w in pairs), pairs)


def test_matching_pauses_the_cyclic_gc_only_while_it_runs():
    import gc

    matcher = Matcher([Interest("s", "vision")])
    assert gc.isenabled()
    matcher.match([SPEC])
    assert gc.isenabled()  # switched back on
    gc.disable()
    try:
        matcher.match([SPEC])
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()
