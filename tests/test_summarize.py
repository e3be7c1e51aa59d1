"""The personalised summary: sentences verbatim from the abstract, carrying the terms, within budget."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from digestbot.models import Hit
from digestbot.render.summarize import sentences, summarize

ABSTRACT = ("Large language models are expensive to serve. We study many things about training data. "
            "Speculative decoding reduces latency by drafting tokens with a small model. "
            "Our results on vision benchmarks are mixed. "
            "Combined with KV-cache quantization, speculative decoding doubles throughput. "
            "Code is released.")
HITS = (Hit("speculative decoding", "abstract"), Hit("kv cache", "abstract"), Hit("quantiz*", "abstract"))


def test_lead_plus_the_sentences_with_the_most_terms_in_abstract_order():
    parts = sentences(ABSTRACT)
    assert summarize(ABSTRACT, HITS) == " ".join([parts[0], parts[2], parts[4]])


def test_the_sentence_with_more_distinct_terms_wins_when_only_one_fits():
    summary = summarize(ABSTRACT, HITS, max_sentences=2)
    assert summary == sentences(ABSTRACT)[0] + " " + sentences(ABSTRACT)[4]  # 3 terms beat 1


def test_budget_is_respected_and_sentences_that_do_not_fit_are_skipped():
    parts = sentences(ABSTRACT)
    budget = len(parts[0]) + 1 + len(parts[4]) + 10  # room for the lead and the best sentence, not a third
    summary = summarize(ABSTRACT, HITS, budget=budget)
    assert len(summary) <= budget and summary == parts[0] + " " + parts[4]


def test_a_lead_longer_than_the_budget_is_cut_at_a_word():
    summary = summarize(ABSTRACT, HITS, budget=30)
    assert len(summary) <= 30 and summary.endswith("…") and ABSTRACT.startswith(summary[:-1])


def test_no_terms_gives_the_lead_and_without_lead_only_term_sentences():
    assert summarize(ABSTRACT, ()) == sentences(ABSTRACT)[0]
    assert summarize(ABSTRACT, HITS, lead=False) == " ".join(sentences(ABSTRACT)[i] for i in (2, 4))
    assert summarize("", HITS) == ""


def test_topic_and_author_hits_do_not_pick_sentences():
    hits = (Hit("efficient-inference", "topic", "efficient-inference"), Hit("vision", "author"))
    assert summarize(ABSTRACT, hits) == sentences(ABSTRACT)[0]


def test_abbreviations_do_not_end_sentences():
    text = "We follow Smith et al. This is one sentence. Models, e.g. Llama, are used. Done here."
    assert sentences(text) == ("We follow Smith et al. This is one sentence.", "Models, e.g. Llama, are used.",
                               "Done here.")


words = st.sampled_from(["model", "decoding", "speculative", "cache", "data", "fast", "the", "we", "KV-cache"])
sentence = st.lists(words, min_size=3, max_size=25).map(lambda ws: " ".join(ws).capitalize() + ".")


@settings(max_examples=150, deadline=None)
@given(st.lists(sentence, min_size=1, max_size=12), st.integers(min_value=20, max_value=600))
def test_property_sentences_come_from_the_abstract_and_fit(parts, budget):
    abstract = " ".join(parts)
    summary = summarize(abstract, HITS, budget=budget)
    assert len(summary) <= budget
    if summary.endswith("…"):
        assert abstract.startswith(summary[:-1].rstrip())
    else:
        chosen = sentences(summary)
        assert chosen and all(s in sentences(abstract) for s in chosen)
        assert chosen[0] == sentences(abstract)[0]
