"""Parse time of each DAG file: ``python dags/x.py`` minus a bare ``python -c "import airflow.sdk"``.

Median of N runs each, in the same run; the budget is 200 ms per file (the scheduler re-parses often).

    make bench            # or: .venv/bin/python bench/dag_parse.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MS = 200


def median_ms(args: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True, env=env, cwd=ROOT)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
    baseline = median_ms([sys.executable, "-c", "import airflow.sdk"], args.runs, env)
    rows = {}
    for dag_file in sorted((ROOT / "dags").glob("*.py")):
        total = median_ms([sys.executable, str(dag_file)], args.runs, env)
        rows[dag_file.name] = {"total_ms": round(total), "over_baseline_ms": round(total - baseline)}
    summary = {"runs": args.runs, "baseline_import_airflow_sdk_ms": round(baseline), "dags": rows,
               "budget_ms": BUDGET_MS}
    (ROOT / "bench" / "results" / "dag_parse.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"baseline `import airflow.sdk`: {baseline:.0f} ms (median of {args.runs})")
    for name, row in rows.items():
        verdict = "ok" if row["over_baseline_ms"] < BUDGET_MS else f"OVER {BUDGET_MS} ms BUDGET"
        print(f"  {name:40} {row['total_ms']:>5} ms total, {row['over_baseline_ms']:>4} ms over baseline  {verdict}")


if __name__ == "__main__":
    main()
