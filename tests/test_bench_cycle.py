"""A smoke run of the cycle benchmark (benchmarks/bench_cycle.py) at a tiny size: the real `run --once`
as a subprocess against its aiosmtpd sink, every digest accounted for. Not a timed assertion: the
figures are the benchmark's to print."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cycle.py"


def test_the_cycle_benchmark_runs_run_once_and_accounts_for_every_digest():
    done = subprocess.run([sys.executable, str(BENCH), "--one", "150", "40"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    row = done.stdout.splitlines()[-1].split()
    assert row[:3] == ["150", "x", "40"]
    matches, digests = int(row[3]), int(row[4])
    # measure() itself checks that the sink received exactly `digests` messages and nothing failed
    assert 0 < digests <= 150 and matches >= digests
    seconds = [float(x) for x in row[6:11]]  # collect, match, record, open, send: from run --once --json
    assert all(s >= 0 for s in seconds) and seconds[-1] > 0
