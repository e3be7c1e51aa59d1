"""Rendering benchmark: personalised digests per second (10 papers each; HTML inlined, text, Slack).

Papers are the bundled sample listing (digestbot/demo/daily_papers.json); subscriptions are real
queries run through the real matcher, so every digest carries its own hits, highlights, why-lines and
summaries. The table splits one digest's cost into its stages; the last line is the figure to watch.

    python benchmarks/run.py render [--quick]
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from digestbot.errors import ParseError  # noqa: E402
from digestbot.matching import Interest, Matcher  # noqa: E402
from digestbot.models import Digest  # noqa: E402
from digestbot.render import Renderer, item  # noqa: E402
from digestbot.sources.hf_json import parse_items_json  # noqa: E402

LISTING = Path(__file__).resolve().parents[1] / "digestbot" / "demo" / "daily_papers.json"
QUERIES = ["inference", '"language model" OR llm*', "reason* OR agent*", "diffusion OR image* OR video",
           "quantiz* OR \"kv cache\" OR efficient", "benchmark* OR evaluation", "privacy OR attack*",
           "training OR data"]
PER_DIGEST = 10


def digests(count: int) -> list[Digest]:
    papers = parse_items_json(LISTING.read_bytes(), lambda m: ParseError(m), "bench")
    matcher = Matcher([Interest(f"sub-{i}", q) for i, q in enumerate(QUERIES)])
    by_sub: dict[str, list] = {}
    for match in matcher.match(papers):
        by_sub.setdefault(match.subscription, []).append(match)
    pools = [m for m in by_sub.values() if len(m) >= PER_DIGEST]
    start = datetime(2026, 11, 22, 8, tzinfo=timezone.utc)
    out = []
    for n in range(count):
        pool = pools[n % len(pools)]
        offset = (n * 3) % (len(pool) - PER_DIGEST + 1)
        out.append(Digest(subscription=f"Subscriber {n}: {QUERIES[n % len(QUERIES)]}", subscription_id=f"sub-{n}",
                          period="Sun 22 Nov 2026", matches=pool[offset:offset + PER_DIGEST], more=3,
                          query=QUERIES[n % len(QUERIES)], period_start=start,
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
    total = _time(renderer.render, work)
    rate = count / total
    sample = work[: max(50, count // 10)]
    items = [[item(m) for m in d.matches] for d in sample]
    ctx = [{"digest": d, "items": i, "subject": renderer.subject(d)} for d, i in zip(sample, items)]
    stages = {
        "items (summaries, highlights)": _time(lambda d: [item(m) for m in d.matches], sample),
        "html template": _time(renderer.templates["html"].render, ctx),
        "css inlining": _time(renderer.inliner.inline, [renderer.templates["html"].render(c) for c in ctx]),
        "text template": _time(renderer.templates["txt"].render, ctx),
        "slack template + split": _time(renderer.slack, ctx),
    }
    print(f"{count} digests x {PER_DIGEST} papers, all three formats: {total:.2f} s, {rate:,.0f} digests/s")
    print(f"{'stage (per digest)':<32}{'µs':>10}{'share':>8}")
    whole = sum(stages.values())
    for name, seconds in stages.items():
        print(f"{name:<32}{seconds / len(sample) * 1e6:>10.0f}{seconds / whole:>8.0%}")
    html = renderer.render(work[0]).html
    print(f"inlined HTML of one digest: {len(html.encode()):,} bytes")
    return f"digests_per_s={rate:.0f}"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
