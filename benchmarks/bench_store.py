"""Store benchmark: recording a 100-paper page must cost the same whatever the database holds; and
how fast each source kind parses.

Databases of 1k, 100k and 1M papers (quick: 1k, 10k, 50k) are filled with synthetic rows by a bulk
`executemany` (not through record_papers, which would take hours at 1M). Each round then records one
page of 100 papers, as a poll does, in one write transaction: half of them new, half already stored
(they update their rows: new upvotes, another source). The median round per size is compared with
the smallest database: `growth_1m_vs_1k` = median(largest) / median(smallest); target <= 1.5.

Parse throughput: each source kind parses a 100-paper response in its real shape (built with the
test fixtures' generators); `papers_per_s` is the slowest kind's rate.

    python benchmarks/run.py store [--quick]
"""
from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from fixtures import atom_entry, atom_feed, daily_items, hf_page, rss_feed, rss_item, seed_bytes  # noqa: E402

from digestbot.models import Paper  # noqa: E402
from digestbot.sources import load_all  # noqa: E402
from digestbot.store import Store  # noqa: E402

PAGE, ROUNDS = 100, 25
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
WORDS = ("sparse", "attention", "quantized", "inference", "decoding", "retrieval", "agents", "diffusion",
         "alignment", "reasoning", "benchmark", "efficient", "scaling", "memory", "latency", "graph")


def synthetic_id(i: int) -> str:
    return f"{2000 + i // 100000}.{i % 100000:05d}"


def synthetic_title(i: int, rng: random.Random) -> str:
    return f"{' '.join(rng.choices(WORDS, k=5)).title()} {i}"


def build_db(path: Path, size: int) -> Store:
    store = Store(f"sqlite:///{path}")
    store.create_tables()
    rng = random.Random(size)
    stamp = (NOW - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S.000000")

    def rows():
        for i in range(size):
            title = synthetic_title(i, rng)
            yield (synthetic_id(i), title.lower().replace(" ", "-"), title, "An abstract. " * 20,
                   '["A. Author"]', 3, '["seed"]', stamp, stamp)

    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO paper (arxiv_id, slug, title, abstract, authors, upvotes, sources, "
                       "ai_keywords, first_seen, updated) VALUES (?, ?, ?, ?, ?, ?, ?, '[]', ?, ?)", rows())
    with sqlite3.connect(path) as db:
        # The bulk load sits in the WAL; a running bot's database has long been checkpointed, and
        # leaving a 600 MB WAL in place would measure the checkpoint, not record_papers.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def page(round_: int, size: int, rng: random.Random) -> list[Paper]:
    """Half new papers (fresh ids), half stored ones seen again with changed upvotes."""
    new = [Paper(f"Brand New Finding {round_}-{n}", "New abstract.", f"2611.{round_ * 1000 + n:05d}",
                 upvotes=n, sources=("bench",)) for n in range(PAGE // 2)]
    known = [Paper(f"Known {i}", "", synthetic_id(i), upvotes=10 + round_, sources=("bench",))
             for i in rng.sample(range(size), PAGE // 2)]
    return new + known


def time_rounds(stores: dict[int, Store]) -> dict[int, float]:
    """Median seconds per 100-paper page for each database size.

    Rounds are interleaved across the sizes (1k, 100k, 1M, 1k, ...) so that a busy machine slows every
    size alike and the ratio holds; the first rounds only warm the caches."""
    rngs = {size: random.Random(1) for size in stores}
    times: dict[int, list[float]] = {size: [] for size in stores}
    for round_ in range(ROUNDS):
        for size, store in stores.items():
            papers = page(round_, size, rngs[size])
            start = time.perf_counter()
            with store.write() as w:
                new = w.record_papers("bench", papers, NOW)
            times[size].append(time.perf_counter() - start)
            assert len(new) == PAGE // 2, "known papers must be recognised, new ones recorded"
    return {size: statistics.median(t[3:]) for size, t in times.items()}


def parse_samples() -> dict[str, tuple[object, bytes]]:
    items = daily_items(80) + daily_items(20)
    kinds = load_all()

    def make(kind: str, **extra):
        cls = kinds[kind]
        return cls(cls.Options(name=kind, kind=kind, **extra))

    return {
        "hf_daily": (make("hf_daily"), json.dumps(items).encode()),
        "hf_search": (make("hf_search", query="x"), json.dumps([i["paper"] for i in items]).encode()),
        "hf_page": (make("hf_page"), hf_page(items)),
        "arxiv": (make("arxiv", query="x"), atom_feed([atom_entry(i) for i in items], len(items))),
        "feed": (make("feed", url="http://x"), rss_feed([rss_item(i, "new") for i in items])),
        "text": (make("text", path="x.txt"), seed_bytes("listing-inference-large.txt")),
    }


def parse_rates(seconds: float = 0.5) -> dict[str, float]:
    rates = {}
    for kind, (source, body) in parse_samples().items():
        count, papers, start = 0, 0, time.perf_counter()
        while count == 0 or time.perf_counter() - start < seconds:
            papers += len(source.parse(body))
            count += 1
        rates[kind] = papers / (time.perf_counter() - start)
    return rates


def run(quick: bool) -> str:
    sizes = (1_000, 10_000, 50_000) if quick else (1_000, 100_000, 1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        stores, built = {}, {}
        for size in sizes:
            start = time.perf_counter()
            stores[size] = build_db(Path(tmp) / f"bench-{size}.db", size)
            built[size] = time.perf_counter() - start
        medians = time_rounds(stores)
        for store in stores.values():
            store.close()
    print(f"{'papers in db':>14} {'build s':>8} {'record 100 ms':>14} {'vs smallest':>12}")
    for size in sizes:
        ratio = medians[size] / medians[sizes[0]]
        print(f"{size:>14,} {built[size]:>8.1f} {medians[size] * 1000:>14.2f} {ratio:>12.2f}")
    growth = medians[sizes[-1]] / medians[sizes[0]]
    print(f"\n{'source kind':>14} {'papers/s':>12}")
    rates = parse_rates(0.2 if quick else 1.0)
    for kind, rate in rates.items():
        print(f"{kind:>14} {rate:>12,.0f}")
    # --quick: the ratio is of its largest size (50k) to 1k, under the same key.
    return f"growth_1m_vs_1k={growth:.2f} papers_per_s={min(rates.values()):.0f}"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
