"""What a task process imports when Airflow loads the plugins folder (every task does, for macros and
listeners): ``plugins_manager.integrate_macros_plugins()`` in a fresh interpreter, timed, and the modules it
added. **after**: the plugins folder as it is (``.airflowignore`` keeps the loader to
``coldcopy_health_plugin.py``; the ``coldcopy`` package is imported as a package, installed). **before**: the
same folder without ``.airflowignore``, which is what the loader did until then: import every ``.py`` under
``plugins/`` by its bare name (``gdpr``, ``partitions``…, each pulling in its dependencies). Alternating.

    .venv/bin/python -m bench.task_imports [--runs 7]
    .venv/bin/python -m bench.task_imports --table
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common

PROBE = """
import json, sys, time
before = set(sys.modules)
import airflow.plugins_manager as plugins_manager
loaded_airflow = set(sys.modules)
started = time.perf_counter()
plugins_manager.integrate_macros_plugins()
seconds = time.perf_counter() - started
added = set(sys.modules) - loaded_airflow
print(json.dumps({"seconds": seconds, "modules": len(added),
                  "ours": sorted(m for m in added if m.startswith("coldcopy") or "/plugins/" in
                                 (getattr(sys.modules[m], "__file__", "") or ""))}))
"""


def probe(plugins: Path, home: Path) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch, "plugins")
        shutil.copytree(common.ROOT / "plugins", before, ignore=shutil.ignore_patterns("__pycache__"))
        (before / ".airflowignore").unlink()
        samples: dict[str, list[dict]] = {"before": [], "after": []}
        folders = {"before": before, "after": common.ROOT / "plugins"}
        common.alternating(runs, {name: (lambda n=name: samples[n].append(probe(folders[n], Path(scratch))) or 0.0)
                                  for name in folders})
    return {name: {"ms": common.spread([s["seconds"] * 1000 for s in got], 1), "modules": got[-1]["modules"],
                   "ours": got[-1]["ours"]} for name, got in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("task_imports")))
        return
    from coldcopy.testing import local_env

    common.write_results("task_imports", vars(args), measure(args.runs), local_env.admin_dsn())


def table(results: dict) -> str:
    rows = ["| plugins folder loaded by a task process | time (min–**median**–max) | modules added | "
            "ColdCopy modules among them |", "|---|---|---|---|"]
    for name, label in (("before", "before: every file under plugins/ imported by its bare name"),
                        ("after", "after: `.airflowignore`, the package imported as a package")):
        r = results[name]
        rows.append(f"| {label} | {r['ms']['min']}–**{r['ms']['median']}**–{r['ms']['max']} ms | {r['modules']} | "
                    f"{len(r['ours'])} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
