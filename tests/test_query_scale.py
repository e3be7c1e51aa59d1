"""Parsing is linear in the query's length, hostile queries included (issue 16, point 13).

Not timed: the lexer reads the query through `str` indexing, so a `str` that counts the characters
it hands out (one per index, a slice's length per slice) measures its work deterministically. A
linear parser reads about 4x as much of a query 4x as long; the old one, which rescanned the rest
of `title:title:title:...` after each prefix, read 16x as much.
"""
from __future__ import annotations

import pytest

from digestbot.matching import QuerySyntaxError, parse_query
from digestbot.matching.query import MAX_DEPTH, And, Term


class _Counted(str):
    """A query that counts the characters read from it by index or slice."""

    read = 0

    def __getitem__(self, key):  # type: ignore[override]
        piece = str.__getitem__(self, key)
        _Counted.read += len(piece)
        return piece


def _read(query: str) -> int:
    _Counted.read = 0
    try:
        parse_query(_Counted(query))
    except QuerySyntaxError:
        pass  # the work done before the error counts as well
    return _Counted.read


HOSTILE = {
    "chained fields": lambda n: "title:" * n + "llm",
    "chained negated fields": lambda n: "-title:" * n + "llm",
    "terms": lambda n: " ".join(f"title:w{i}" for i in range(n)),
    "phrases and prefixes": lambda n: " OR ".join(f'title:"a w{i}" abstract:w{i}*' for i in range(n)),
    "a long hyphenated word after a field": lambda n: "title:" + "-".join(["kv"] * n),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_the_work_of_parsing_grows_linearly_with_the_query(name):
    make = HOSTILE[name]
    small, large = _read(make(2_000)), _read(make(8_000))
    assert small > 0
    assert large < 5 * small, f"{name}: 4x the query read {large / small:.1f}x the characters"


def test_ten_thousand_chained_fields_still_fail_at_the_depth_limit_with_the_same_caret():
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("title:" * 10_000 + "llm")
    assert info.value.message.startswith(f"nested too deeply: at most {MAX_DEPTH} levels")
    assert info.value.position == len("title:") * MAX_DEPTH  # the first field past the limit


def test_ten_thousand_fielded_terms_parse_to_one_and():
    node = parse_query(" ".join(f"title:w{i}" for i in range(10_000)))
    assert isinstance(node, And) and len(node.children) == 10_000
    assert node.children[-1] == Term("w9999", "title")


def test_a_config_load_parses_each_distinct_query_once(monkeypatch, tmp_path):
    """However many subscriptions share a query (or a topic), loading the config parses it once."""
    import digestbot.matching
    from digestbot import config as config_module

    parsed: list[str] = []
    real = digestbot.matching.parse_query
    monkeypatch.setattr(digestbot.matching, "parse_query", lambda q: (parsed.append(q), real(q))[1])
    subscriptions = "".join(f"""
[[subscriptions]]
name = "reader {i}"
query = '{"title:llm inference" if i < 50 else f"w{i}"}'
topics = ["kv"]
email = ["r{i}@example.org"]
""" for i in range(60))
    text = f"[topics.kv]\nquery = 'title:kv OR cache'\n{subscriptions}"
    config_module.loads(text, tmp_path / "config.toml")
    assert sorted(parsed) == sorted({"title:kv OR cache", "title:llm inference", *(f"w{i}" for i in range(50, 60))})
