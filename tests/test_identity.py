"""One paper, one row: across sources, versions, title-only sightings and updates."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fixtures import atom_entry, atom_feed, daily_items, poll_context, rss_feed, rss_item

from digestbot import pipeline
from digestbot.models import Paper
from digestbot.store import Store

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
LATER = NOW + timedelta(hours=6)

@pytest.fixture
def store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.create_tables()
    return store

def record(store: Store, source: str, papers: list[Paper], now: datetime = NOW) -> list[Paper]:
    with store.write() as w:
        return [p for _, p in w.record_papers(source, papers, now)]

def test_the_same_paper_from_hugging_face_and_arxiv_is_one_row_listing_both(store):
    hf = Paper("SciCode: A Research Coding Benchmark", "Abstract.", "2407.13168", upvotes=17, sources=("hf",))
    arxiv = Paper("SciCode: A Research Coding\n  Benchmark", "Abstract.", "2407.13168v2", sources=("arxiv",))
    assert len(record(store, "hf", [hf])) == 1
    assert record(store, "arxiv", [arxiv], LATER) == []
    [paper] = store.papers()
    assert paper.sources == ("arxiv", "hf") and paper.upvotes == 17 and paper.first_seen == NOW

def test_new_versions_never_make_a_paper_new_again(store):
    record(store, "arxiv", [Paper("T", arxiv_id="2407.13168v1")])
    assert record(store, "arxiv", [Paper("T (revised title)", arxiv_id="2407.13168v3")], LATER) == []
    assert store.count_papers() == 1

def test_a_title_only_paper_seen_later_with_an_id_is_the_same_paper(store):
    record(store, "saved", [Paper("Fast  KV-Cache Quantization", "Short.", sources=("saved",))])
    assert record(store, "hf", [Paper("Fast KV-cache quantization", "A longer abstract.", "2411.00001",
                                      sources=("hf",))], LATER) == []
    [paper] = store.papers()
    assert paper.arxiv_id == "2411.00001" and paper.sources == ("hf", "saved")
    assert paper.abstract == "A longer abstract."
    # ... and from then on, the id finds it even under another title spelling.
    assert record(store, "arxiv", [Paper("Fast KV Cache Quantisation", arxiv_id="2411.00001v2")], LATER) == []

def test_a_paper_with_an_id_seen_later_title_only_is_the_same_paper(store):
    record(store, "hf", [Paper("Fast KV-Cache Quantization", arxiv_id="2411.00001", sources=("hf",))])
    assert record(store, "saved", [Paper("Fast KV-cache quantization", sources=("saved",))], LATER) == []
    assert store.papers()[0].sources == ("hf", "saved")

def test_two_papers_with_the_same_title_but_different_ids_stay_two(store):
    record(store, "a", [Paper("Attention Is All You Need", arxiv_id="1706.03762")])
    assert len(record(store, "b", [Paper("Attention is all you need", arxiv_id="2501.00001")], LATER)) == 1
    assert store.count_papers() == 2

def test_title_only_and_id_sightings_in_one_batch_make_one_row(store):
    batch = [Paper("Same Paper"), Paper("Same paper", arxiv_id="2411.00002"), Paper("same paper!")]
    assert len(record(store, "mixed", batch)) == 1
    assert store.count_papers() == 1 and store.papers()[0].arxiv_id == "2411.00002"

@pytest.mark.parametrize("change", [
    {"upvotes": 42}, {"ai_summary": "Now with an AI summary."}, {"ai_keywords": ("kv cache",)},
    {"github": "https://github.com/o/r"}, {"project_page": "https://o.github.io/r"},
])
def test_updates_change_the_row_and_never_make_it_new(store, change):
    base = dict(title="Paper", abstract="A.", arxiv_id="2411.00003", upvotes=3, sources=("hf",))
    record(store, "hf", [Paper(**base)])
    assert record(store, "hf", [Paper(**{**base, **change})], LATER) == []
    [paper] = store.papers()
    for key, value in change.items():
        assert getattr(paper, key) == value
    assert paper.first_seen == NOW

def test_rss_replace_updates_a_known_paper_and_never_creates_one(store):
    record(store, "hf", [Paper("Known", "Old abstract.", "2411.00004", sources=("hf",))])
    replaced = Paper("Known", "The abstract of version 2, longer.", "2411.00004v2", sources=("rss",),
                     update_only=True)
    unknown = Paper("Never seen", "x", "2301.99999v3", sources=("rss",), update_only=True)
    assert record(store, "rss", [replaced, unknown], LATER) == []
    [paper] = store.papers()
    assert paper.key == "2411.00004" and paper.sources == ("hf", "rss")
    assert paper.abstract == "The abstract of version 2, longer."

def test_polling_hf_then_arxiv_then_rss_makes_each_paper_new_once(http_server, tmp_path):
    items = daily_items(14, published=date(2026, 11, 20))
    http_server.today = date(2026, 11, 20)
    http_server.daily_papers({"2026-11-20": items[:12]})
    http_server.route("/api/query", atom_feed([atom_entry(i, 2) for i in items[:12]], 12))
    http_server.route("/rss/cs.CL", rss_feed([rss_item(i, "new") for i in items[:2]]
                                             + [rss_item(i, "cross") for i in items[12:14]]
                                             + [rss_item(items[5], "replace", 3)]))
    ctx, _ = poll_context(tmp_path, f"""
[[sources]]
name = "hf"
kind = "hf_daily"
url = "{http_server.url}/api/daily_papers"

[[sources]]
name = "arxiv"
kind = "arxiv"
url = "{http_server.url}/api/query"
query = "cat:cs.CL"

[[sources]]
name = "rss"
kind = "feed"
url = "{http_server.url}/rss/cs.CL"
""")
    results = [pipeline.poll(ctx, name, NOW) for name in ("hf", "arxiv", "rss")]
    assert [(r.error, r.seen, r.new) for r in results] == [(None, 12, 12), (None, 12, 0), (None, 5, 2)]
    assert ctx.store.count_papers() == 14
    by_key = {p.key: p for p in ctx.store.papers()}
    assert by_key[items[0]["paper"]["id"]].sources == ("arxiv", "hf", "rss")
    assert by_key[items[5]["paper"]["id"]].sources == ("arxiv", "hf", "rss")  # the replace updated it
    assert by_key[items[12]["paper"]["id"]].sources == ("rss",)
    # Matches (and so deliveries) exist once per paper, however many sources listed it.
    with ctx.store.read() as s:
        from sqlmodel import select

        from digestbot.store.tables import MatchRow
        matched = [m.paper_id for m in s.exec(select(MatchRow)).all()]
    assert len(matched) == len(set(matched)) > 0

def test_a_paper_announced_new_and_replaced_in_one_batch_is_new(store):
    batch = [Paper("P", arxiv_id="2411.00005v1"), Paper("P", arxiv_id="2411.00005v2", update_only=True)]
    assert len(record(store, "rss", batch)) == 1
