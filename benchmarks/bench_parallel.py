"""Parallel sending benchmark: `[email] connections` and several processes, against a relay that answers
each DATA after 50 ms (real relays take tens of milliseconds; one connection carries one message at a time).

Each run is the real `digestbot -c CONFIG run --once --send-backlog --json` as a subprocess on a fresh
database, 1,000 subscriptions x 200 papers (bench_cycle's listing and queries: one recipient each,
instant), against smtp_sink.py with `delay_ms = 50`. The figure of a run is the send rate the sink saw:
messages / (last arrival - first arrival), so that polling, matching and start-up do not count.

- `connections4_speedup`: rate with `connections = 4` over rate with `connections = 1`; the two alternate,
  3 runs each, medians (target >= 3.2).
- `workers2_speedup` (`workers2`): on a throwaway PostgreSQL (bench_cycle.Postgres), two processes with
  `connections = 2` each, started together on the same config and database, over one such process
  (target >= 1.8). It needs processes that share the polling (a leader lock): `na (reason)` when a process
  fails.

    python benchmarks/run.py parallel [--quick]      (--quick: 300 subscriptions, one run each, no PostgreSQL)
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_cycle import ROOT, SECRET, Postgres, listing, write_config  # noqa: E402
from smtp_sink import Sink  # noqa: E402

DELAY_MS = 50
SUBS, PAPERS, RUNS = 1_000, 200, 3


@dataclass
class Run:
    label: str
    messages: int
    rate: float  # messages per second at the sink
    wall: float  # seconds, start of the processes to the exit of the last


class World:
    """The listing on a loopback HTTP server and a slow sink, shared by every run."""

    def __init__(self, workdir: Path, subs: int):
        from servers import HttpServer

        self.workdir, self.subs = workdir, subs
        self.items, self.words, self.phrases = listing(PAPERS, seed=PAPERS)
        self.http = HttpServer().start()
        self.http.daily_papers({datetime.now(UTC).date().isoformat(): self.items})
        self.sink = Sink(workdir, delay_ms=DELAY_MS)
        self.runs = 0

    def close(self) -> None:
        self.sink.stop()
        self.http.stop()

    def measure(self, label: str, connections: int, *, processes: int = 1, database: str | None = None) -> Run:
        """`processes` `run --once` at once, each with `connections`, on a fresh database (or `database`)."""
        self.runs += 1
        run_dir = self.workdir / f"run{self.runs}"
        run_dir.mkdir()
        config = write_config(run_dir, "config", database or f"sqlite:///{run_dir}/digestbot.db", self.http.url,
                              self.sink.port, self.subs, self.words, self.phrases, links=False,
                              connections=connections)
        before = len(self.sink.entries())
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CYCLE_BENCH_SECRET": SECRET}
        started = time.perf_counter()
        children = []
        for k in range(processes):
            out, err = (run_dir / f"run{k}.out").open("wb"), (run_dir / f"run{k}.err").open("wb")
            children.append((subprocess.Popen([sys.executable, "-m", "digestbot", "-c", str(config), "run", "--once",
                                               "--send-backlog", "--json"], stdout=out, stderr=err, env=env), err))
        for child, err in children:
            child.wait()
            err.close()
        wall = time.perf_counter() - started
        for k, (child, _) in enumerate(children):
            if child.returncode != 0:
                tail = (run_dir / f"run{k}.err").read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise Failed(f"process {k + 1} of {processes} exited {child.returncode}: {tail[0][:160]}")
        entries = self.sink.entries(before)
        delivered = {entry.message_id for entry in entries}
        if len(delivered) != len(entries):
            raise Failed(f"{len(entries) - len(delivered)} messages arrived twice")
        return Run(label, len(entries), self.sink.rate(before), wall)


class Failed(Exception):
    """A run that cannot give a figure (a process failed, a message arrived twice)."""


def connections(world: World, runs: int = RUNS) -> tuple[float, list[Run]]:
    """connections = 1 and = 4, alternated; the median rate of 4 over the median rate of 1."""
    done: list[Run] = []
    for k in range(runs):
        for n in ((1, 4) if k % 2 == 0 else (4, 1)):
            done.append(world.measure(f"connections={n}", n))
    one = statistics.median(r.rate for r in done if r.label == "connections=1")
    four = statistics.median(r.rate for r in done if r.label == "connections=4")
    return four / one, done


def workers2(workdir: Path, subs: int = SUBS, runs: int = RUNS) -> tuple[float | None, str, list[Run]]:
    """One process with connections = 2 vs two such processes together, on PostgreSQL; (speedup or None,
    the reason when None, the runs)."""
    try:
        pg = Postgres()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        return None, f"no PostgreSQL: {exc}", []
    (workdir / "workers").mkdir()
    world = World(workdir / "workers", subs)
    done: list[Run] = []
    try:
        for k in range(runs):
            for processes in ((1, 2) if k % 2 == 0 else (2, 1)):
                database = _fresh_database(pg, f"w{k}p{processes}")
                done.append(world.measure(f"processes={processes}", 2, processes=processes, database=database))
    except Failed as exc:
        return None, str(exc), done
    finally:
        world.close()
        pg.stop()
    one = statistics.median(r.rate for r in done if r.label == "processes=1")
    two = statistics.median(r.rate for r in done if r.label == "processes=2")
    return two / one, "", done


def _fresh_database(pg: Postgres, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + f"/{name}"


def table(runs: list[Run]) -> None:
    print(f"{'run':<18} {'messages':>8} {'msgs/s at sink':>15} {'wall s':>7}")
    for r in runs:
        print(f"{r.label:<18} {r.messages:>8} {r.rate:>15.1f} {r.wall:>7.1f}")


def run(quick: bool) -> str:
    subs, runs = (300, 1) if quick else (SUBS, RUNS)
    print(f"run --once --send-backlog, {subs} subscriptions x {PAPERS} papers (one recipient each, instant); the sink "
          f"answers each DATA after {DELAY_MS} ms; rate = messages / (last arrival - first arrival)")
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp), subs)
        try:
            speedup, done = connections(world, runs)
        finally:
            world.close()
        table(done)
        if quick:
            workers = "na (--quick)"
        else:
            ratio, reason, more = workers2(Path(tmp), subs, runs)
            table(more)
            workers = f"{ratio:.2f}" if ratio is not None else f"na ({reason})"
    return f"connections4_speedup={speedup:.2f} workers2_speedup={workers}"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
