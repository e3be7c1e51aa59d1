"""Run benchmarks: `python benchmarks/run.py NAME [--quick]` (NAME: a bench_NAME.py of this folder, or all).

NAME: store, matching, render, delivery, cycle, parallel.

Each benchmark is `benchmarks/bench_NAME.py` with `run(quick: bool) -> str`: it prints a table and
returns its key figures as `key=value` pairs, which this script prints as the last line.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*available(), "all"])
    parser.add_argument("--quick", action="store_true", help="a small size (for CI)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    lines = []
    for name in available() if args.name == "all" else [args.name]:
        print(f"== {name}{' (quick)' if args.quick else ''}")
        lines.append(importlib.import_module(f"bench_{name}").run(args.quick))
    print(" ".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
