"""The benchmarks' shared measuring pieces (bench/common.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from bench import common

# A parent that stays small and starts a child holding 300 MB for a moment: RUSAGE_CHILDREN of the
# parent's own peak, or the parent's RSS alone, would miss it.
PARENT = textwrap.dedent("""
    import subprocess, sys
    subprocess.run([sys.executable, "-c", "import time; held = bytearray(300 * 2**20); time.sleep(0.5)"], check=True)
""")


def test_peak_rss_counts_the_children_of_the_process_measured():
    process = subprocess.Popen([sys.executable, "-c", PARENT])
    with common.PeakRss(process.pid) as peak:
        assert process.wait() == 0
    assert peak.mb > 300


def test_alternating_changes_which_variant_goes_first_every_round():
    calls: list[str] = []
    results = common.alternating(4, {"ours": lambda: calls.append("ours") or 1.0,
                                     "baseline": lambda: calls.append("baseline") or 2.0})
    assert calls == ["ours", "baseline", "baseline", "ours", "ours", "baseline", "baseline", "ours"]
    assert results == {"ours": [1.0] * 4, "baseline": [2.0] * 4}


def test_spread_reports_min_median_max():
    assert common.spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0, "runs": 4, "p95": 10.0}


def test_nothing_in_the_tree_edits_sys_path():
    """One package imported one way (installed, editable): no module puts a folder on sys.path or PYTHONPATH,
    which is how bench/airflow_stack.py once hid scripts/airflow_stack.py and refresh.py was found twice."""
    import re

    root = Path(__file__).resolve().parents[2]
    edits = re.compile(r"sys\.path(\[|\.insert|\.append|\.extend)|\"PYTHONPATH\"|PYTHONPATH :?=")
    found = [f"{path.relative_to(root)}:{n}" for folder in ("bench", "dags", "plugins", "scripts", "tests")
             for path in (root / folder).rglob("*.py") for n, line in enumerate(path.read_text().splitlines(), 1)
             if edits.search(line) and "edits = re.compile" not in line]
    found += [f"Makefile:{n}" for n, line in enumerate((root / "Makefile").read_text().splitlines(), 1)
              if edits.search(line)]
    assert found == []
