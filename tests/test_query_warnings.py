"""Queries that parse but cannot mean what was typed (issue 20, point 8): `llm or vlm`, `llm not survey` and
`speculative ANDD decoding` are valid (lowercase words and unknown all-caps words are searched for as words),
so they match next to nothing, silently. `check` and `subs add/set` warn with a caret under the word, and
`subs add/set` say how many stored papers of the last 7 days the query matches."""
from __future__ import annotations

import json
import re

import pytest
from test_cli import run_main, served, write_config  # noqa: F401  (served: the fixture)

from digestbot.matching import QuerySyntaxError, query_warnings


@pytest.mark.parametrize(("query", "word", "advice"), [
    ("llm or vlm", "or", "write OR to match papers with either term"),
    ("llm not survey", "not", "write NOT to leave out the papers with the term after it"),
    ("llm and vlm", "and", "write AND, or leave it out"),
    ("speculative ANDD decoding", "ANDD", "did you mean AND?"),
    ("decoding NOR survey", "NOR", "did you mean OR?"),
    ("(vision OR image) NOTT survey", "NOTT", "did you mean NOT?"),
])
def test_operator_lookalikes_are_warned_about_with_a_caret(query, word, advice):
    [warning] = query_warnings(query)
    assert warning.position == query.index(word) and advice in warning.message
    message, shown, caret = str(warning).split("\n")
    assert shown == f"  {query}" and caret == "  " + " " * query.index(word) + "^"


@pytest.mark.parametrize("query", [
    "LLM AND RAG", "ANN OR HNSW search", 'llm "or" vlm', "or else", "survey not", "kv-cache OR vllm", "",
    'title:"and" llm', "inference AND (llm OR \"language model\") NOT survey",
])
def test_meant_queries_give_no_warning(query):
    assert query_warnings(query) == []


def test_a_query_that_does_not_parse_raises_as_parsing_does():
    with pytest.raises(QuerySyntaxError):
        query_warnings("llm OR")


def test_check_warns_with_file_line_key_and_caret(tmp_path, capsys, served):  # noqa: F811
    path = write_config(tmp_path, served.url)
    text = path.read_text(encoding="utf-8").replace('query = "vision OR image"', "query = 'speculative ANDD decoding'")
    path.write_text(text, encoding="utf-8")
    code, out, err = run_main(capsys, "-c", str(path), "check")
    assert code == 0 and out.startswith(f"{path}: OK")
    line = text.splitlines().index("query = 'speculative ANDD decoding'") + 1
    assert f"warning: {path}:{line}: topics.vision.query: 'ANDD' is not an operator" in err
    assert "\n  speculative ANDD decoding\n              ^" in err
    code, out, _ = run_main(capsys, "-c", str(path), "check", "--json")
    [warning] = json.loads(out)["warnings"]
    assert code == 0 and "did you mean AND?" in warning


def test_subs_add_and_set_warn_and_count_the_recent_matches(tmp_path, capsys, served):  # noqa: F811
    path = write_config(tmp_path, served.url)
    # No database yet: the warning, no count, and no database made.
    code, out, err = run_main(capsys, "-c", str(path), "subs", "add", "early", "--query", "llm or vlm",
                              "--email", "e@example.org")
    assert code == 0 and "added subscription 'early'" in out
    assert re.search(rf"warning: {re.escape(str(path))}:\d+: subscriptions\[2\]\.query: 'or' is searched for as a "
                     r"word .*\n  llm or vlm\n      \^", err), err
    assert "matches" not in err and not (tmp_path / "bot.db").exists()

    assert run_main(capsys, "-c", str(path), "run", "--once", "--no-send")[0] == 1  # "broken" fails
    stored = len(json.loads(run_main(capsys, "-c", str(path), "papers", "--json")[1]))
    assert stored > 0

    code, out, err = run_main(capsys, "-c", str(path), "subs", "add", "lab", "--query", "inference not survey",
                              "--email", "lab@example.org")
    assert code == 0 and "'not' is searched for as a word" in err
    assert re.search(rf"'lab' matches \d+ of the {stored} papers stored from the last 7 days", err), err

    code, out, err = run_main(capsys, "-c", str(path), "subs", "set", "lab", "query=inference NOT survey")
    assert code == 0 and "warning" not in err
    tested = json.loads(run_main(capsys, "-c", str(path), "subs", "test", "lab", "--json")[1])
    assert len(tested["matches"]) > 0
    assert f"'lab' matches {len(tested['matches'])} of the {stored} papers stored from the last 7 days " \
           "(`digestbot subs test` shows which)" in err

    code, _, err = run_main(capsys, "-c", str(path), "subs", "set", "lab", "max_papers=5")
    assert code == 0 and "matches" not in err  # the query did not change: nothing to say about it
