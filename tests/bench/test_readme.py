"""README.md's benchmark blocks are exactly what bench/results/*.json say (bench/readme.py writes them)."""

from __future__ import annotations

from pathlib import Path

from bench import readme

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_benchmark_block_of_the_readme_matches_its_results_file():
    current = readme.README.read_text()
    blocks = [m["name"] for m in readme.BLOCK.finditer(current)]
    assert {p.stem for p in (BENCH / "results").glob("*.json")} <= set(blocks)
    assert readme.generated(current) == current, "README.md's bench tables are stale: run python bench/readme.py"


def test_a_figure_typed_into_a_block_by_hand_is_caught():
    current = readme.README.read_text()
    start = current.index("<!-- bench:partitions -->\n") + len("<!-- bench:partitions -->\n")
    edited = current[:start] + "| archive | **0.01 s** |\n" + current[start:]
    assert readme.generated(edited) != edited
