"""Writes the benchmark tables of docs/benchmarks.md (and docs/safety.md's fault campaign) from
``bench/results/*.json``, so the figures cannot drift.

Each ``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->`` block of those pages is replaced by
``bench/NAME.py``'s ``table()`` of ``bench/results/NAME.json``. ``make bench`` runs this after the benchmarks;
``--check`` exits 1 when the page differs from what the results say (a test runs it).

    .venv/bin/python -m bench.readme [--check]
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
README = BENCH.parent / "docs" / "benchmarks.md"
PAGES = (README, BENCH.parent / "docs" / "safety.md")
BLOCK = re.compile(r"(<!-- bench:(?P<name>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.S)


def bench_module(name: str):
    """``bench/NAME.py`` (the ``bench`` package: no bare module name can clash with it)."""
    return importlib.import_module(f"bench.{name}")


def generated(readme: str) -> str:
    from bench import common

    def fill(match: re.Match) -> str:
        name = match["name"]
        return f"{match.group(1)}{bench_module(name).table(common.load_results(name)).rstrip()}\n{match.group(4)}"

    return BLOCK.sub(fill, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    stale = 0
    for page in PAGES:
        current = page.read_text()
        wanted = generated(current)
        if args.check:
            if wanted != current:
                names = [m["name"] for m in BLOCK.finditer(current) if m.group(0) not in wanted]
                print(f"docs/{page.name}'s tables differ from bench/results/ for: {', '.join(names)}; "
                      "run .venv/bin/python -m bench.readme")
                stale = 1
            continue
        page.write_text(wanted)
    return stale


if __name__ == "__main__":
    sys.exit(main())
