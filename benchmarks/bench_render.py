"""Rendering benchmark: personalised digests per second (10 papers each; HTML inlined, text, Slack).

Papers are the bundled sample listing (digestbot/demo/daily_papers.json); subscriptions are real
queries run through the real matcher, so every digest carries its own hits, highlights, why-lines and
summaries. The table splits one digest's cost into its stages; the last line is the figure to watch.

    python benchmarks/run.py render [--quick]
"""
from __future__ import annotations

import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestbot.errors import ParseError  # noqa: E402
from digestbot.matching import Interest, Matcher, tokenize  # noqa: E402
from digestbot.models import Digest, Paper  # noqa: E402
from digestbot.render import Renderer, item  # noqa: E402
from digestbot.sources.hf_json import parse_items_json  # noqa: E402

LISTING = Path(__file__).resolve().parents[1] / "digestbot" / "demo" / "daily_papers.json"
PER_DIGEST = 10
SUBSCRIPTIONS = 400  # distinct term sets: no digest reuses another's personalised summaries


def queries(papers: list[Paper], rng: random.Random) -> list[str]:
    """OR-queries of three words that occur in 8+ papers, so each has at least 10 matches."""
    counts = Counter(w for p in papers for w in set(tokenize(p.title + " " + p.abstract)) if len(w) > 4)
    pool = sorted(w for w, n in counts.items() if 8 <= n <= 60)
    return [" OR ".join(rng.sample(pool, 3)) for _ in range(SUBSCRIPTIONS)]


def digests(count: int) -> list[Digest]:
    papers = parse_items_json(LISTING.read_bytes(), lambda m: ParseError(m), "bench")
    wanted = queries(papers, random.Random(5))
    matcher = Matcher([Interest(f"sub-{i}", q) for i, q in enumerate(wanted)])
    by_sub: dict[str, list] = {}
    for match in matcher.match(papers):
        by_sub.setdefault(match.subscription_id, []).append(match)
    pools = [(sub, m) for sub, m in by_sub.items() if len(m) >= PER_DIGEST]
    start = datetime(2026, 11, 22, 8, tzinfo=UTC)
    out = []
    for n in range(count):
        sub, pool = pools[n % len(pools)]
        query = wanted[int(sub.split("-")[1])]
        offset = (n // len(pools)) % (len(pool) - PER_DIGEST + 1)
        out.append(Digest(subscription=f"Subscriber {n}", subscription_id=sub, period="Sun 22 Nov 2026",
                          matches=pool[offset:offset + PER_DIGEST], more=3, query=query, period_start=start,
                          more_url="https://huggingface.co/papers", unsubscribe_url="mailto:d@example.org",
                          manage="Edit the subscription in the config."))
    return out


def _time(fn, items) -> float:
    begin = time.perf_counter()
    for x in items:
        fn(x)
    return time.perf_counter() - begin


def run(quick: bool) -> str:
    count = 300 if quick else 3000
    renderer = Renderer()
    work = digests(count)
    renderer.render(work[0])  # warm: template compilation and pattern caches are per process
    cpu = time.process_time()
    total = _time(renderer.render, work)
    cpu = time.process_time() - cpu
    # "On one core": digests per second of CPU time this (single-threaded) process got. On a shared
    # machine the wall-clock rate also counts time the process spent waiting for a core.
    rate, wall_rate = count / cpu, count / total
    sample = work[: max(50, count // 10)]
    items = [[item(m) for m in d.matches] for d in sample]
    ctx = [{"digest": d, "items": i, "subject": renderer.subject(d)} for d, i in zip(sample, items, strict=True)]
    stages = {
        "items (summaries, highlights)": _time(lambda d: [item(m) for m in d.matches], sample),
        "html template": _time(renderer.templates["html"].render, ctx),
        "(css inlining per digest: avoided)": _time(renderer.inliner.inline,
                                                    [renderer.templates["html"].render(c) for c in ctx]),
        "text template": _time(renderer.templates["txt"].render, ctx),
        "slack blocks + split": _time(renderer.slack, ctx),
    }
    print(f"{count} digests x {PER_DIGEST} papers, all three formats: {cpu:.2f} s CPU ({rate:,.0f} digests/s), "
          f"{total:.2f} s wall ({wall_rate:,.0f} digests/s)")
    print(f"{'stage (per digest)':<36}{'µs':>8}{'share':>8}")
    whole = sum(v for k, v in stages.items() if not k.startswith("("))
    for name, seconds in stages.items():
        share = "" if name.startswith("(") else f"{seconds / whole:.0%}"
        print(f"{name:<36}{seconds / len(sample) * 1e6:>8.0f}{share:>8}")
    html = renderer.render(work[0]).html
    print(f"inlined HTML of one digest: {len(html.encode()):,} bytes")
    return f"digests_per_s={rate:.0f} wall_digests_per_s={wall_rate:.0f} target=1000"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
