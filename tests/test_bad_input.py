"""Bad input from the network: each case ends in a ParseError (or FetchError) naming the source and the
problem, nothing from that response is stored, and the other sources still run."""
from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from fixtures import daily_items, golden, poll_context, seed_bytes, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digestbot import cli, pipeline
from digestbot.errors import ParseError
from digestbot.sources import load_all

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title><entry><title>&lol9;</title></entry></feed>
"""
HTML_ERROR = b"<!DOCTYPE html><html><head><title>503</title></head><body>We'll be right back.</body></html>"
TEN_MB = b"[" + b" " * (10 * 1024 * 1024) + b"]"
# (kind, extra TOML, body, error class, what the message must say)
CASES = {
    "truncated JSON": ("hf_search", 'query = "x"', golden("hf_search.json")[:5000], "ParseError", "invalid JSON"),
    "HTML error page with 200": ("hf_daily", "", HTML_ERROR, "ParseError", "HTML page"),
    "wrong schema": ("hf_search", 'query = "x"', b'{"papers": [{"title": "x"}]}', "ParseError",
                     "expected a JSON array"),
    "empty body": ("feed", "", b"", "ParseError", "empty response body"),
    "10 MB body": ("hf_page", "", TEN_MB, "FetchError", "over the 10485760"),
    "not UTF-8": ("arxiv", 'query = "x"', golden("arxiv_api.xml").replace(b"Verifiable", b"Verifi\xe9ble")
                  .replace(b' encoding="UTF-8"', b""), "ParseError", "not UTF-8"),
    "entity bomb in a feed": ("feed", "", BOMB, "ParseError", "declares entities"),
    "entity bomb in arXiv": ("arxiv", 'query = "x"', BOMB, "ParseError", "declares entities"),
    "bot challenge": ("hf_page", "", golden("hf_page_challenge.html"), "ParseError", "bot-challenge"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_response_fails_its_source_only_and_stores_nothing_from_it(case, http_server, tmp_path):
    kind, extra, body, error_class, reason = CASES[case]
    http_server.today = date(2026, 11, 20)
    http_server.route("/bad", body, headers={"ETag": '"bad-1"'})
    http_server.route("/good", daily_items(5))
    ctx, _ = poll_context(tmp_path, f"""
[[sources]]
name = "bad"
kind = "{kind}"
url = "{http_server.url}/bad"
{extra}

[[sources]]
name = "good"
kind = "hf_search"
url = "{http_server.url}/good"
query = "anything"
""")
    bad, good = pipeline.run_once(ctx, NOW, send=False)[0]
    assert bad.error is not None and reason in bad.error and "source 'bad'" in bad.error
    assert (good.error, good.new) == (None, 5)
    assert ctx.store.count_papers() == 5 and all(p.sources == ("good",) for p in ctx.store.papers())
    state = ctx.store.source_states()["bad"]
    assert state.last_success is None and reason in state.last_error
    assert ctx.store.source_memory("bad").validators == {}
    if error_class == "ParseError":  # the parser itself refuses the body (not the network layer)
        with pytest.raises(ParseError, match=reason):
            load_all()[kind](ctx.config.source("bad")).parse(body)


def test_run_once_reports_the_failed_source_exits_1_and_keeps_the_rest(http_server, tmp_path, capsys):
    http_server.route("/bad", b'[{"paper": {"id": "2411.1", "title": "cut of')
    http_server.route("/good", daily_items(4))
    path = write_config(tmp_path, f"""
[[sources]]
name = "broken-search"
kind = "hf_search"
url = "{http_server.url}/bad"
query = "x"

[[sources]]
name = "good"
kind = "hf_search"
url = "{http_server.url}/good"
query = "x"
""")
    assert cli.main(["-c", str(path), "run", "--once", "--no-send"]) == 1
    out = capsys.readouterr().out
    assert "broken-search: FAILED: source 'broken-search': invalid JSON" in out
    assert "good: 4 papers listed, 4 new" in out


# --- property-based: random and mutated payloads never make a parser raise anything but ParseError ---

def _parsers() -> dict[str, object]:
    kinds = load_all()
    extra = {"arxiv": {"query": "x"}, "hf_search": {"query": "x"}, "text": {"path": "x.txt"},
             "feed": {"url": "http://x"}}
    return {k: cls(cls.Options(name=f"fuzz-{k}", kind=k, **extra.get(k, {}))) for k, cls in kinds.items()}


PARSERS = _parsers()
SAMPLES = [golden("arxiv_api.xml"), golden("arxiv_rss.xml"), golden("hf_page_date.html"),
           golden("hf_search.json"), json.dumps(daily_items(3)).encode(),
           seed_bytes("listing-machine-inference.txt")[:4000],
           golden("arxiv_error.xml"), BOMB]


@st.composite
def payloads(draw) -> bytes:
    how = draw(st.sampled_from(["random", "truncate", "flip", "splice"]))
    if how == "random":
        return draw(st.binary(max_size=2000))
    sample = draw(st.sampled_from(SAMPLES))
    cut = draw(st.integers(0, len(sample)))
    if how == "truncate":
        return sample[:cut]
    if how == "flip":
        noise = draw(st.binary(min_size=1, max_size=8))
        return sample[:cut] + noise + sample[cut + len(noise):]
    return sample[:cut] + draw(st.sampled_from(SAMPLES))[cut:]


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.sampled_from(sorted(PARSERS)))
def test_parsers_raise_nothing_but_parse_error(body, kind):
    try:
        papers = PARSERS[kind].parse(body)
    except ParseError as exc:
        assert exc.source == f"fuzz-{kind}"
    else:
        assert isinstance(papers, list)
