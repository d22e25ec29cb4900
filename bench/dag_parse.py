"""Parse time of every DAG file, loaded the way the dag-processor loads it: ``DagBag`` on the single file, in a
fresh process that has already imported Airflow (as the processor's forked child has), timed inside it.

Baseline, paired in every run: the same ``DagBag`` load of an empty ``.py`` file (the processor's own cost per
file). Each run loads the baseline and every file in a shuffled order (seeded), so no file is always first or
last; per file: min and median over the runs of its own time, and of its time minus the same run's baseline.
Budget: 200 ms over the baseline per file (the processor re-parses every file every 30 s by default).

    make bench            # or: .venv/bin/python -m bench.dag_parse [--runs 15]; --table reprints the README table
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 200
RESULTS = ROOT / "bench" / "results" / "dag_parse.json"
PROBE = """
import sys, time
from airflow.dag_processing.dagbag import DagBag
began = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed_ms = (time.perf_counter() - began) * 1000
if bag.import_errors:
    sys.exit(f"import errors: {bag.import_errors}")
print(elapsed_ms)
"""


def load_ms(path: Path, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env,
                          cwd=ROOT, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def table(summary: dict) -> str:
    over = [row["over_baseline_median_ms"] for row in summary["dags"].values()]
    rows = [f"Each file loaded the way the dag-processor loads it — `DagBag` on that one file, timed inside a fresh "
            f"process that has already imported Airflow (as the processor's forked child has) — paired in every run "
            f"with the same load of an empty `.py` file, the {len(summary['dags'])} files and the baseline in a "
            f"shuffled (seeded) order, {summary['runs']} runs (`make bench`; `--table` reprints this from "
            f"`bench/results/dag_parse.json`). Every file: **{min(over):+.0f} to {max(over):+.0f} ms** over the "
            f"processor's own per-file cost (median); budget {summary['budget_over_baseline_ms']} ms.",
            "",
            "| DAG file | load, median (min) | over the empty-file baseline, median (min) |", "|---|---|---|"]
    base = summary["baseline_empty_file_ms"]
    rows.append(f"| *(empty file: the baseline)* | {base['median']:.1f} ms ({base['min']:.1f}) | — |")
    for name, row in summary["dags"].items():
        rows.append(f"| `{name}` | {row['median_ms']:.1f} ms ({row['min_ms']:.1f}) | "
                    f"**{row['over_baseline_median_ms']:+.1f} ms** ({row['over_baseline_min_ms']:+.1f}) |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md table of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(RESULTS.read_text())))
        return
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow-test"))
    files = sorted((ROOT / "dags").glob("*.py"))
    shuffle = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        empty = Path(folder) / "empty.py"
        empty.write_text("")
        load_ms(empty, env)  # warm-up: the OS file cache, .pyc files
        times: dict[str, list[float]] = {p.name: [] for p in [empty, *files]}
        over: dict[str, list[float]] = {p.name: [] for p in files}
        for _ in range(args.runs):
            order = [empty, *files]
            shuffle.shuffle(order)
            this_run = {p.name: load_ms(p, env) for p in order}
            for name, ms in this_run.items():
                times[name].append(ms)
            for p in files:
                over[p.name].append(this_run[p.name] - this_run[empty.name])
    summary = {
        "runs": args.runs, "seed": args.seed, "method": "DagBag(dag_folder=<file>) timed in a fresh process "
        "that has imported airflow.dag_processing.dagbag; baseline: an empty .py file in the same run; shuffled order",
        "budget_over_baseline_ms": BUDGET_MS,
        "baseline_empty_file_ms": {"min": round(min(times["empty.py"]), 1),
                                   "median": round(statistics.median(times["empty.py"]), 1)},
        "dags": {p.name: {"min_ms": round(min(times[p.name]), 1),
                          "median_ms": round(statistics.median(times[p.name]), 1),
                          "over_baseline_min_ms": round(min(over[p.name]), 1),
                          "over_baseline_median_ms": round(statistics.median(over[p.name]), 1)} for p in files},
    }
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    over_budget = [n for n, r in summary["dags"].items() if r["over_baseline_median_ms"] >= BUDGET_MS]
    print(f"over the {BUDGET_MS} ms budget: {', '.join(over_budget) or 'none'}")


if __name__ == "__main__":
    main()
