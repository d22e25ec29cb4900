"""docs/benchmarks.md's blocks are exactly what bench/results/*.json say (bench/readme.py writes them), and the
README stays a short front page."""

from __future__ import annotations

from pathlib import Path

from bench import readme

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_benchmark_block_of_the_readme_matches_its_results_file():
    blocks = set()
    for page in readme.PAGES:  # docs/benchmarks.md, and docs/safety.md's fault campaign
        current = page.read_text()
        blocks |= {m["name"] for m in readme.BLOCK.finditer(current)}
        assert readme.generated(current) == current, f"docs/{page.name}'s tables are stale: run python -m bench.readme"
    assert {p.stem for p in (BENCH / "results").glob("*.json")} <= blocks


def test_a_figure_typed_into_a_block_by_hand_is_caught():
    current = readme.README.read_text()
    start = current.index("<!-- bench:partitions -->\n") + len("<!-- bench:partitions -->\n")
    edited = current[:start] + "| archive | **0.01 s** |\n" + current[start:]
    assert readme.generated(edited) != edited


def test_the_readme_is_a_front_page_and_links_a_page_that_exists():
    import re

    readme = BENCH.parent / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", text)
    assert links
    for page, anchor in links:
        assert (BENCH.parent / page).exists(), page
        if anchor:  # GitHub's heading slugs: lower case, punctuation but - and _ dropped, spaces to -
            headings = re.findall(r"^#+ (.+)$", (BENCH.parent / page).read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{page}#{anchor}: no such heading"
