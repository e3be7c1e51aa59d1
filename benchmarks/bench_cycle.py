"""Cycle benchmark: the whole `digestbot run --once`, as a user runs it, against its delivery floor.

For N subscriptions x P new papers, a fresh database and config are made and the real command runs as a
subprocess: `digestbot -c CONFIG run --once --send-backlog --json` (`--send-backlog`: a new database's
first poll would otherwise record the papers and send nothing). Papers come from tests/servers.py's
loopback HTTP server through the `hf_daily` source (its real paging, 100 a page), on today's date;
titles and abstracts are real ones re-mixed (bench_matching.corpus). Each subscription is a 2-6 term query
of the corpus's topical words and phrases (`query`: about 9 matches of 200 papers, and every subscription
gets a digest), with one recipient and an instant schedule. Mail goes to an aiosmtpd sink in its own
process (smtp_sink.py), which logs each message's size and arrival time.

The floor, in the same run, against the same sink: a raw smtplib loop sending the same number of messages
of the same mean size over one connection, records nothing. `cycle_vs_floor` is the cycle's wall time
over the floor's (the floor is what the sending alone cannot go below).

Per size: wall time of the subprocess (start to exit, so config load and matcher build count), its phases
from `run --once --json`'s "seconds" (collect = fetch + parse, match, record = papers + matches + their
ledger rows + the commit, open = the due digests made, send = claim + render + SMTP + `sent` records),
its peak RSS: of the whole process tree (the run and its render child, render/apart.py, and
multiprocessing's resource tracker), the sum sampled from /proc every 50 ms, and never less than
os.wait4's peak of the largest of them; digests sent per second of wall time.

`pg_vs_sqlite`: 10k x 200 on a throwaway PostgreSQL (Debian's binaries, as tests/test_ledger_postgres.py
starts one; `synchronous_commit = off`, the durability of SQLite's WAL with synchronous=NORMAL) over the same
size on SQLite. `links`: 1k x 200 with readers' personal links on (bot.public_url and [web] secret_env), so
each email body is rendered per recipient. `workers2_speedup` and `connections4_speedup` come from
bench_parallel.py (a sink answering each DATA after 50 ms; `na` with --quick).

    python benchmarks/run.py cycle [--quick]        (--quick: 1k x 200 only)
    python benchmarks/bench_cycle.py --one SUBS PAPERS [--links] [--pg] [--connections N]   (one size: A/B runs)
    CYCLE_PROFILE=/tmp/cycle.prof python benchmarks/run.py cycle --quick     (each run under cProfile)
"""
from __future__ import annotations

import glob
import json
import os
import random
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_matching import corpus, vocabulary  # noqa: E402
from smtp_sink import Sink  # noqa: E402

SENDER = "digest@example.org"
FULL = [(1_000, 200), (10_000, 200), (50_000, 200), (10_000, 1_000)]
QUICK = [(1_000, 200)]
SECRET = "cycle-benchmark-link-secret-0123456789abcdef"


def sink(workdir: Path, delay_ms: float = 0) -> Sink:
    """The aiosmtpd sink (smtp_sink.py), keeping its first message for the floor's messages."""
    return Sink(workdir, delay_ms=delay_ms, sample=True)


def listing(papers: int, seed: int) -> tuple[list[dict], list[str], list[str]]:
    """Today's hf_daily items, and the corpus's topical words and phrases (for the queries)."""
    rng = random.Random(seed)
    corpus_papers = corpus(papers, rng)
    words, phrases = vocabulary(corpus_papers)
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    items = [{"paper": {"id": p.arxiv_id, "title": p.title, "summary": p.abstract, "upvotes": p.upvotes,
                        "authors": [{"name": a} for a in p.authors], "publishedAt": published,
                        "ai_keywords": list(p.ai_keywords)}, "publishedAt": published} for p in corpus_papers]
    return items, words, phrases


def query(rng: random.Random, words: list[str], phrases: list[str]) -> str:
    """2-6 terms (a quarter of them phrases): ORed, the last two of four or more ANDed (about 9 matches
    a subscription out of 200 papers)."""
    n = rng.randint(2, 6)
    terms = [f'"{rng.choice(phrases)}"' if phrases and rng.random() < 0.25 else rng.choice(words) for _ in range(n)]
    if n <= 3:
        return " OR ".join(terms)
    return " OR ".join(terms[:n - 2]) + f" OR ({terms[-2]} {terms[-1]})"


def write_config(workdir: Path, name: str, database: str, http_url: str, smtp_port: int, subs: int,
                 words: list[str], phrases: list[str], *, links: bool, connections: int = 1) -> Path:
    rng = random.Random(subs)
    bot = f'[bot]\ndatabase = "{database}"\n'
    if links:
        bot += 'public_url = "https://digest.example.org"\n\n[web]\nsecret_env = "CYCLE_BENCH_SECRET"\n'
    # `connections` only when not the default: an older checkout (A/B runs) does not know the key
    more = f"connections = {connections}\n" if connections != 1 else ""
    text = [bot, f'\n[email]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
                 f'sender = "Digest <{SENDER}>"\n{more}\n[[sources]]\nname = "hf"\nkind = "hf_daily"\n'
                 f'url = "{http_url}/api/daily_papers"\n']
    for s in range(subs):
        q = query(rng, words, phrases).replace("\\", "\\\\").replace('"', '\\"')
        text.append(f'[[subscriptions]]\nname = "sub {s}"\nquery = "{q}"\nemail = ["r{s}@example.org"]\n'
                    f'schedule = "instant"\n')
    path = workdir / f"{name}.toml"
    path.write_text("\n".join(text))
    return path


def run_once(config: Path, workdir: Path) -> tuple[float, float, dict]:
    """Wall seconds, peak RSS (MB) and the --json document of one `run --once` subprocess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CYCLE_BENCH_SECRET": SECRET}
    out, err = workdir / "run.out", workdir / "run.err"
    started = time.perf_counter()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        # CYCLE_PROFILE=FILE: the run under cProfile (python -m pstats FILE), to see where its time goes
        profile = ["-m", "cProfile", "-o", os.environ["CYCLE_PROFILE"]] if os.environ.get("CYCLE_PROFILE") else []
        process = subprocess.Popen([sys.executable, *profile, "-m", "digestbot", "-c", str(config), "run", "--once",
                                    "--send-backlog", "--json"], stdout=stdout, stderr=stderr, env=env)
        done = threading.Event()
        tree_peak = [0]
        sampler = threading.Thread(target=_sample_tree, args=(process.pid, done, tree_peak), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)  # its rusage: the largest of it and its children (not the sink)
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"run --once exited {process.returncode}: {err.read_text()[-2000:]}")
    return wall, max(usage.ru_maxrss, tree_peak[0]) / 1024, json.loads(out.read_text())


def _sample_tree(pid: int, done: threading.Event, peak: list[int]) -> None:
    """The peak of the summed RSS (KB) of `pid` and its descendants, until `done`."""
    while not done.wait(0.05):
        peak[0] = max(peak[0], sum(_rss_kb(p) for p in _tree(pid)))


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [pid, *(p for child in children for p in _tree(int(child)))]


def _rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    except (OSError, IndexError):
        return 0


def floor(sink: Sink, count: int, size: int) -> float:
    """A raw smtplib loop: `count` messages of `size` bytes (the sample message padded) over one connection."""
    sample = sink.sample.read_bytes()
    head, _, body = sample.partition(b"\r\n\r\n")
    filler = b"x" * 70 + b"\r\n"
    body = (body + filler * (max(0, size - len(sample)) // len(filler) + 1))[:max(1, size - len(head) - 4)]
    message = head + b"\r\n\r\n" + body
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", sink.port) as smtp:
        for k in range(count):
            smtp.sendmail(SENDER, [f"r{k}@example.org"], message)
    return time.perf_counter() - started


class Postgres:
    """A throwaway PostgreSQL cluster on loopback (as tests/test_ledger_postgres.py starts one)."""

    def __init__(self) -> None:
        from servers import free_port

        initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.folder = Path(tempfile.mkdtemp(prefix="digestbot-pg-"))
        self.data, port = self.folder / "data", free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.folder, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*self.as_user, initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True)
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-w", "-l", str(self.folder / "log"),
                        "-o", f"-h 127.0.0.1 -p {port} -k {self.folder} -c synchronous_commit=off", "start"],
                       check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.as_user, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def _binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def measure(label: str, subs: int, papers: int, workdir: Path, sink: Sink, *, database: str | None = None,
            links: bool = False, connections: int = 1) -> dict:
    from servers import HttpServer

    items, words, phrases = listing(papers, seed=papers)
    run_dir = workdir / label.replace(" ", "-")
    run_dir.mkdir()
    before = sink.reset()
    with HttpServer() as http:
        http.daily_papers({datetime.now(UTC).date().isoformat(): items})
        config = write_config(run_dir, "config", database or f"sqlite:///{run_dir}/digestbot.db", http.url,
                              sink.port, subs, words, phrases, links=links, connections=connections)
        wall, rss, report = run_once(config, run_dir)
    sizes = sink.sizes()[before:]
    digests = len(report["sent"])
    assert len(sizes) == digests and not report["failed"], (len(sizes), digests, report["failed"][:3])
    mean_size = sum(sizes) // max(1, len(sizes))
    floor_seconds = floor(sink, digests, mean_size) if digests else float("nan")
    matches = sum(s["matches"] for s in report["sources"])
    return {"label": label, "subs": subs, "papers": papers, "wall": wall, "rss": rss, "digests": digests,
            "matches": matches, "size": mean_size, "floor": floor_seconds,
            # an older checkout (A/B runs) reports no phases
            **report.get("seconds", dict.fromkeys(("collect", "match", "record", "open", "send"), float("nan")))}


def table(rows: list[dict]) -> None:
    print("run --once --send-backlog as a subprocess; one recipient per subscription, instant; aiosmtpd sink in "
          "its own process; floor: raw smtplib, same count and mean size, one connection")
    print(f"{'size':<16} {'matches':>8} {'digests':>8} {'wall s':>7} {'collect':>7} {'match':>6} {'record':>7} "
          f"{'open':>6} {'send':>7} {'RSS MB':>7} {'dig/s':>6} {'floor s':>7} {'x floor':>7} {'KB/msg':>6}")
    for r in rows:
        print(f"{r['label']:<16} {r['matches']:>8} {r['digests']:>8} {r['wall']:>7.1f} {r['collect']:>7.2f} "
              f"{r['match']:>6.2f} {r['record']:>7.2f} {r['open']:>6.2f} {r['send']:>7.2f} {r['rss']:>7.0f} "
              f"{r['digests'] / r['wall']:>6.0f} {r['floor']:>7.2f} {r['wall'] / r['floor']:>7.1f} "
              f"{r['size'] / 1024:>6.1f}")


def one(subs: int, papers: int, *, links: bool, postgres: bool, connections: int = 1) -> None:
    """One size alone (for A/B runs of two checkouts: `python benchmarks/bench_cycle.py --one 10000 200`)."""
    size = f"{subs // 1000}k" if subs >= 1000 else str(subs)
    label = f"{size} x {papers}{' links' if links else ''}{' pg' if postgres else ''}" + \
        (f" c{connections}" if connections != 1 else "")
    with tempfile.TemporaryDirectory() as tmp:
        sink_, pg = sink(Path(tmp)), Postgres() if postgres else None
        try:
            row = measure(label, subs, papers, Path(tmp), sink_, links=links, database=pg.url if pg else None,
                          connections=connections)
        finally:
            sink_.stop()
            if pg is not None:
                pg.stop()
    table([row])


def run(quick: bool) -> str:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sink_ = sink(workdir)
        try:
            for subs, papers in QUICK if quick else FULL:
                rows.append(measure(f"{subs // 1000}k x {papers}", subs, papers, workdir, sink_))
            rows.append(measure("1k x 200 links", 1_000, 200, workdir, sink_, links=True))
            if not quick:
                try:
                    pg = Postgres()
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"PostgreSQL: not measured ({exc})")
                else:
                    try:
                        rows.append(measure("10k x 200 pg", 10_000, 200, workdir, sink_, database=pg.url))
                    finally:
                        pg.stop()
        finally:
            sink_.stop()
    table(rows)
    parallel = "connections4_speedup=na workers2_speedup=na"  # --quick: not measured (minutes of 50-ms replies)
    if not quick:
        import bench_parallel

        parallel = bench_parallel.run(quick=False)
    by = {r["label"]: r for r in rows}
    ten, fifty, one = by.get("10k x 200"), by.get("50k x 200"), by["1k x 200"]
    # Between 10k and 50k: both render apart (render/apart.py, from 2,000 digests), so the child's constant
    # ~75 MB cancels out and what is left is what each subscription adds; 1k renders in-process.
    per_1k = (fifty["rss"] - ten["rss"]) / 40 if fifty and ten else float("nan")
    pg = by.get("10k x 200 pg")
    fig = lambda value: "na" if value is None or value != value else f"{value:.2f}"  # noqa: E731 (nan: na)
    return (f"cycle_vs_floor_10k={fig(ten and ten['wall'] / ten['floor'])} "
            f"rss_mb_50k={fig(fifty and fifty['rss'])} rss_mb_per_1k_subs={fig(per_1k)} "
            f"pg_vs_sqlite={fig(pg and ten and pg['wall'] / ten['wall'])} {_figures(parallel, 'workers2_speedup')} "
            f"{_figures(parallel, 'connections4_speedup')} cycle_vs_floor_1k={fig(one['wall'] / one['floor'])}")


def _figures(line: str, key: str) -> str:
    """`key=value` from bench_parallel's last line, with its reason when it has one (`na (why)`)."""
    after = line.partition(f"{key}=")[2]
    value = after.split(" ", 1)[0]
    if value == "na" and after.startswith("na ("):
        value = after[:after.index(")") + 1].replace(" ", "_")
    return f"{key}={value or 'na'}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        one(int(sys.argv[2]), int(sys.argv[3]), links="--links" in sys.argv, postgres="--pg" in sys.argv,
            connections=int(sys.argv[sys.argv.index("--connections") + 1]) if "--connections" in sys.argv else 1)
    else:
        print(run("--quick" in sys.argv))
