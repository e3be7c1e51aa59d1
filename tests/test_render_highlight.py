"""The highlighter: marks the subscriber's terms after escaping, in HTML, plain text and Slack."""
from __future__ import annotations

from markupsafe import Markup

from digestbot.models import Hit, Match, Paper
from digestbot.render import why
from digestbot.render.highlight import mark_html, mark_slack, mark_text, pattern, terms


def marker(*texts: str):
    return pattern(terms(Hit(t, "title") for t in texts))


def test_terms_phrases_across_punctuation_and_prefixes_are_marked():
    m = marker("speculative decoding", "kv cache", "quantiz*")
    text = "Speculative-Decoding with a KV-cache and Quantization (quantized)"
    assert mark_text(text, m) == "*Speculative-Decoding* with a *KV-cache* and *Quantization* (*quantized*)"


def test_only_whole_words_are_marked():
    m = marker("cache", "amp")
    assert mark_text("caches cache precache amp, example", m) == "caches *cache* precache *amp*, example"


def test_html_escapes_first_then_marks_and_never_marks_inside_an_entity():
    m = marker("amp", "script")
    html = mark_html("<script> & amp", m)
    assert isinstance(html, Markup)
    assert html == ('&lt;<mark style="background:#fff3b0;color:inherit;">script</mark>&gt; &amp; '
                    '<mark style="background:#fff3b0;color:inherit;">amp</mark>')


def test_slack_escapes_control_sequences_then_bolds():
    m = marker("channel", "decoding")
    assert mark_slack("<!channel> & decoding <http://x|y>", m) == "&lt;!*channel*&gt; &amp; *decoding* &lt;http://x|y&gt;"


def test_topic_author_and_keyword_hits_are_not_marked_in_text():
    hits = [Hit("efficient-inference", "topic", "efficient-inference"), Hit("smith", "author"),
            Hit("llm", "keyword"), Hit("decoding", "abstract", "efficient-inference")]
    assert terms(hits) == ("decoding",)  # a topic's own terms are the subscriber's terms too


def test_longer_phrase_wins_over_its_word_and_overlaps_are_not_nested():
    m = marker("decoding", "speculative decoding")
    assert mark_text("speculative decoding and decoding", m) == "*speculative decoding* and *decoding*"


def test_non_ascii_text_keeps_offsets_right():
    m = marker("straße", "inference")
    assert mark_text("İstanbul inference über Straße", m) == "İstanbul *inference* über *Straße*"


def test_nothing_to_mark():
    assert pattern(()) is None
    assert mark_html("<b>", None) == "&lt;b&gt;"


def test_why_is_short_one_entry_per_term_and_topics_name_their_terms():
    match = Match("s", Paper(title="t"), 1.0, (Hit("speculative decoding", "title"),
                                               Hit("speculative decoding", "abstract"),
                                               Hit("efficient-inference", "topic", "efficient-inference"),
                                               Hit("kv cache", "abstract", "efficient-inference")))
    assert why(match) == "matched: speculative decoding, topic efficient-inference (kv cache)"
    variants = Match("s", Paper(title="t"), 1.0, (Hit("LLM", "title"), Hit("LLMs", "abstract"),
                                                  Hit("language models", "title"), Hit("language model", "abstract"),
                                                  Hit("process", "title")))
    assert why(variants) == "matched: LLM(s), language model(s), process"  # "process" is no plural of "proces"
    many = Match("s", Paper(title="t"), 1.0, tuple(Hit(term, "abstract") for term in (
        "speculative decoding", "draft model", "inference-time", "test-time compute", "best-of-n", "reasoning")))
    line = why(many)
    assert len(line) <= 80 and line.startswith("matched: speculative decoding, draft model") and line.endswith(" more")
