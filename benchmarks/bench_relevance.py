"""Relevance benchmark: what the digests select, measured on a labelled set, with and without learning.

The labelled set (benchmarks/data/relevance, see its README): 616 real papers, five reader profiles
(a careful query, a one-word query, three liked papers) and a grade per paper and profile (2 relevant,
1 borderline, 0 not). Each profile becomes four subscriptions of one installation:

    query    the careful query, `learn = false`: the baseline, in the same run
    learned  the careful query; its reader votes
    naive    the one-word query; its reader votes
    like     a topic of the three liked papers alone (`like = [...]`); its reader votes

The papers are served by the real `hf_daily` source from a loopback HTTP server (tests/servers.py):
day 0 lists the fifteen liked papers (so that `like` topics find them), days 1-10 the others in a
fixed shuffle (one per seed). After each day's `run --once` (App.run_once, the command's own call)
a simulated reader votes through `digestbot feedback` on every paper the day's digest showed: up for
grade 2, down for grade 0, nothing for 1. max_papers is 500 (no day has more than ~70 papers), so
the digest never caps what is measured: delivered = shown. Precision, recall and F1 are measured on
what days 6-10 delivered, borderline papers counted as neither hit nor miss (precision = relevant /
(delivered - borderline), recall = relevant / relevant served); F1 is averaged over the seeds.

Costs: `embed_ms_per_paper` is the time to represent one paper (TF-IDF vector, or sentence
embedding); `score_ms` the time to judge 200 new papers for 1,000 learning subscriptions (tastes
built from the benchmark's own final votes, cycled), one core.

    python benchmarks/run.py relevance [--quick]
"""
from __future__ import annotations

import io
import json
import logging
import os
import random
import sys
import tempfile
import time
import tomllib
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import mean

# One core, as the targets say (and the machine is shared): BLAS threads would only add contention to the
# small products of scoring. Set before numpy is first imported.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digestbot import cli  # noqa: E402
from digestbot.app import App, space  # noqa: E402
from digestbot.digest import rank  # noqa: E402
from digestbot.http import Http  # noqa: E402
from digestbot.relevance import embed  # noqa: E402
from digestbot.relevance.embed import EmbeddingSpace, text_of  # noqa: E402
from digestbot.relevance.model import Example, Taste, judge_all  # noqa: E402
from digestbot.store import Ledger  # noqa: E402
from tests.servers import HttpServer  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "relevance"
CONFIGS = ("query", "learned", "naive", "like")
DAYS, MEASURED = 10, range(6, 11)
MAX_PAPERS = 500


def load() -> tuple[list[dict], dict[str, dict[str, int]], dict[str, dict]]:
    papers = [json.loads(line) for line in (DATA / "papers.jsonl").read_text().splitlines()]
    grades = {row["id"]: row["labels"] for row in map(json.loads, (DATA / "labels.jsonl").read_text().splitlines())}
    profiles = tomllib.loads((DATA / "profiles.toml").read_text())["profiles"]
    return papers, grades, profiles


def item(paper: dict, day: date) -> dict:
    stamp = f"{day.isoformat()}T06:00:00.000Z"
    return {"paper": {"id": paper["id"], "title": paper["title"], "summary": paper["abstract"], "authors": [],
                      "publishedAt": stamp, "upvotes": 0}, "publishedAt": stamp}


def config_text(workdir: Path, url: str, profiles: dict[str, dict], representation: str) -> str:
    q = json.dumps
    text = [f'[bot]\ndatabase = "sqlite:///{workdir}/bench.db"\noutbox = "{workdir}/outbox"\n',
            f'[relevance]\nrepresentation = "{representation}"\n' if representation != "lexical" else "",
            f'[[sources]]\nname = "hf"\nkind = "hf_daily"\nurl = "{url}/api/daily_papers"\n']
    for name, p in profiles.items():
        text.append(f'[topics.{name}-examples]\nlike = {q(p["like"])}\n')
        subs = {"query": (p["query"], "", "learn = false\n"), "learned": (p["query"], "", ""),
                "naive": (p["naive_query"], "", ""), "like": ("", f"{name}-examples", "")}
        for config, (query, topic, extra) in subs.items():
            text.append(f'[[subscriptions]]\nname = "{name}-{config}"\nquery = {q(query)}\n'
                        f'topics = {q([topic] if topic else [])}\nemail = ["{name}@example.org"]\n'
                        f'schedule = "instant"\nmax_papers = {MAX_PAPERS}\n{extra}')
    return "\n".join(text)


def days_of(papers: list[dict], profiles: dict[str, dict], seed: int, days: int) -> list[list[dict]]:
    liked = {k for p in profiles.values() for k in p["like"]}
    rest = [p for p in papers if p["id"] not in liked]
    random.Random(seed).shuffle(rest)
    return [[p for p in papers if p["id"] in liked]] + [rest[d::days] for d in range(days)]


def simulate(papers: list[dict], grades: dict[str, dict[str, int]], profiles: dict[str, dict], seed: int,
             days: int, representation: str) -> tuple[dict[tuple[str, str], set[str]], dict[str, int], App]:
    """Run the installation for days 0..days; (profile, config) -> papers delivered on the measured days,
    and the day each paper was served."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-relevance-"))
    batches = days_of(papers, profiles, seed, days)
    first = datetime.now(UTC).date() - timedelta(days=days + 1)
    served = {p["id"]: d for d, batch in enumerate(batches) for p in batch}
    delivered: dict[tuple[str, str], set[str]] = {(n, c): set() for n in profiles for c in CONFIGS}
    server = HttpServer().start()
    try:
        server.daily_papers({(first + timedelta(days=d)).isoformat(): [item(p, first + timedelta(days=d)) for p in b]
                             for d, b in enumerate(batches)})
        config_path = workdir / "digestbot.toml"
        config_path.write_text(config_text(workdir, server.url, profiles, representation))
        seen_digests: set[int] = set()
        # send_backlog: day 0 (the liked papers) is the new database's first poll, which `run --once` alone
        # would record without sending; the benchmark's reader sees it as every later day (`--send-backlog`)
        app = App.from_config(config_path, http=Http(clock_tolerance=None), send_backlog=True)
        for d in range(len(batches)):
            today = first + timedelta(days=d)
            server.today = today
            app = App.from_config(config_path, http=app.http, store=app.store, send_backlog=True)  # a new `run --once`
            app.run_once(datetime(today.year, today.month, today.day, 12, tzinfo=UTC))
            for row in Ledger(app.store).digests("sent"):
                if row.id in seen_digests:
                    continue
                seen_digests.add(row.id)
                name, _, config = row.subscription_id.rpartition("-")
                shown = rank(app.store.digest_matches(row.id))[:MAX_PAPERS]
                if d in MEASURED:
                    delivered[name, config].update(m.paper.key for m in shown)
                if config == "query":
                    continue  # the baseline never votes
                for m in shown:
                    grade = grades.get(m.paper.key, {}).get(name, 0)
                    if grade != 1:
                        vote(config_path, row.subscription_id, m.paper.key, "up" if grade == 2 else "down")
    finally:
        server.stop()
    return delivered, served, app


def vote(config_path: Path, sub: str, paper: str, vote: str) -> None:
    with redirect_stdout(io.StringIO()):
        code = cli.main(["-c", str(config_path), "-q", "feedback", sub, paper, vote])
    assert code == 0, (sub, paper, vote)


def scores(delivered: set[str], profile: str, grades: dict[str, dict[str, int]], measured: set[str]) -> tuple:
    relevant = {k for k in measured if grades.get(k, {}).get(profile) == 2}
    border = {k for k in delivered if grades.get(k, {}).get(profile) == 1}
    hits = len(delivered & relevant)
    judged = len(delivered) - len(border)
    precision = hits / judged if judged else 1.0
    recall = hits / len(relevant) if relevant else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def costs(app: App, papers: list[dict], profiles: dict[str, dict], representation: str
          ) -> tuple[float, float, float]:
    """ms to represent one paper; ms to judge 200 papers for 1,000 learning subscriptions; ms to build
    those 1,000 subscriptions' tastes from their votes (centroids, thresholds: each poll does it)."""
    stored = app.store.papers(limit=5000)
    representation_of = space(app.config, app.store)
    sample = stored[:200]
    started = time.process_time()
    if isinstance(representation_of, EmbeddingSpace):  # the model's cost (the poll stored every embedding)
        representation_of.encoder.encode([text_of(p) for p in stored])
    else:
        representation_of.vectors(stored)
    embed_ms = (time.process_time() - started) * 1000 / len(stored)
    by_key = {p.key: p for p in stored}
    rated = []
    for name in profiles:
        examples = [Example(by_key[v.paper], v.vote == "up", "")
                    for v in app.store.votes(f"{name}-learned") if v.paper in by_key]
        rated.append((examples, representation_of.vectors([e.paper for e in examples])))
    started = time.process_time()
    subscriptions = [Taste(representation_of, *rated[k % len(rated)]) for k in range(1000)]
    train_ms = (time.process_time() - started) * 1000
    vectors = representation_of.vectors(sample)
    started = time.process_time()
    judge_all(representation_of, subscriptions, vectors, [[False] * len(vectors)] * len(subscriptions))
    return embed_ms, (time.process_time() - started) * 1000, train_ms


def run(quick: bool) -> str:
    logging.getLogger("digestbot").setLevel(logging.CRITICAL)
    papers, grades, profiles = load()
    seeds = (1,) if quick else (1, 2, 3)
    if quick:  # a CI smoke test: two profiles, one seed
        profiles = dict(list(profiles.items())[:2])
    representations = ["lexical", "semantic"] if embed.available() else ["lexical"]
    results: dict[str, dict[tuple[str, str], list[tuple]]] = {}
    cost: dict[str, tuple[float, float, float]] = {}
    for representation in representations:
        table = results.setdefault(representation, {})
        for seed in seeds:
            delivered, served, app = simulate(papers, grades, profiles, seed, DAYS, representation)
            measured = {k for k, d in served.items() if d in MEASURED}
            for (name, config), keys in delivered.items():
                table.setdefault((name, config), []).append(scores(keys, name, grades, measured))
        cost[representation] = costs(app, papers, profiles, representation)
    print(f"{len(papers)} papers, {len(profiles)} profiles, days 1-{DAYS} (measured {MEASURED.start}-"
          f"{MEASURED.stop - 1}), seeds {seeds}; P/R/F1 averaged over seeds")
    means: dict[tuple[str, str], float] = {}
    for representation, table in results.items():
        print(f"-- representation: {representation}   embed {cost[representation][0]:.2f} ms/paper, "
              f"score 1,000 subs x 200 papers {cost[representation][1]:.0f} ms (their tastes from their votes: "
              f"{cost[representation][2]:.0f} ms)")
        print(f"{'profile':10}" + "".join(f"{c:>20}" for c in CONFIGS))
        for name in profiles:
            cells = []
            for config in CONFIGS:
                p, r, f = (mean(x[i] for x in table[name, config]) for i in range(3))
                cells.append(f"{p:.2f}/{r:.2f}/{f:.2f}")
            print(f"{name:10}" + "".join(f"{c:>20}" for c in cells))
        for config in CONFIGS:
            means[representation, config] = mean(mean(x[2] for x in table[n, config]) for n in profiles)
        print(f"{'mean F1':10}" + "".join(f"{means[representation, c]:>20.2f}" for c in CONFIGS))
    chosen = max(representations, key=lambda r: (means[r, "learned"], r == "lexical"))  # by measurement
    others = ", ".join(f"{r} {means[r, 'learned']:.2f}" for r in representations if r != chosen)
    print(f"chosen representation: {chosen} (mean F1 learned {means[chosen, 'learned']:.2f}"
          + (f"; {others})" if others else ")"))
    return (f"f1_query={means[chosen, 'query']:.2f} f1_learned={means[chosen, 'learned']:.2f} "
            f"f1_naive_learned={means[chosen, 'naive']:.2f} f1_like_learned={means[chosen, 'like']:.2f} "
            f"embed_ms_per_paper={cost[chosen][0]:.2f} score_ms={cost[chosen][1]:.0f}")


if __name__ == "__main__":
    print(run("--quick" in sys.argv[1:]))
