"""The schema drift check's duration (issue 44): building the expected schema on the verify server (a throwaway
cluster here) and reading live's catalog, at each ``--scales`` of generated data, ``--runs`` each; and what the live
database saw (its catalog reads: the statements it ran, from pg_stat_statements where the server has it, else the
one query of sql/drift/catalog.sql).

    .venv/bin/python -m bench.drift [--scales 8,32,96 --runs 3]
    .venv/bin/python -m bench.drift --table
"""

from __future__ import annotations

import argparse

import psycopg

from bench import common
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.drift import find
from coldcopy.testing import local_env, servers


def at_scale(server: str, verify_admin: str, scale: int, runs: int) -> dict:
    with common.bench_database(server, scale, "drift") as dsn:
        with psycopg.connect(dsn) as conn:
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
        reports = [find(dsn, verify_admin, discover_migrations()) for _ in range(runs)]
    assert all(not r.differences for r in reports), reports[0].summary()
    return {"email_events": events, "objects": reports[0].objects, "files": len(reports[0].files),
            "expected_s": common.spread([r.expected_s for r in reports]),
            "live_s": common.spread([r.live_s for r in reports], 3),
            "total_s": common.spread([r.expected_s + r.live_s for r in reports])}


def table(results: dict) -> str:
    lines = [f"The drift check (`schema_drift`, `coldcopy.migrations.drift.find`): the expected schema built from the "
             f"applied files on the verify server, then live's catalog read and compared; {results['settings']['runs']}"
             " runs per scale (medians, min–max). PostgreSQL "
             f"{results['machine']['postgresql']}, {results['machine']['cores']} cores "
             "(`python -m bench.drift`).", "",
             "| scale (email_events) | objects compared | expected schema (verify server) | live catalog read | "
             "total | share on live |", "|---|---|---|---|---|---|"]
    for scale, r in sorted(results["scales"].items(), key=lambda kv: int(kv[0])):
        share = r["live_s"]["median"] / r["total_s"]["median"] if r["total_s"]["median"] else 0
        lines.append(f"| {scale} ({r['email_events']:,}) | {r['objects']:,} | {r['expected_s']['median']:.2f} s "
                     f"({r['expected_s']['min']:.2f}–{r['expected_s']['max']:.2f}) | {r['live_s']['median']:.3f} s | "
                     f"**{r['total_s']['median']:.2f} s** | {share:.1%} |")
    lines += ["", "The live database sees one catalog query (no table scanned): its time follows the number of "
              "objects, not of rows. Goal: ≤ 60 s at scale 96."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("drift")))
        return
    server = local_env.admin_dsn()
    cluster = servers.ThrowawayCluster().start()
    try:
        verify_admin = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
        scales = {str(s): at_scale(server, verify_admin, int(s), args.runs) for s in args.scales.split(",")}
    finally:
        cluster.stop()
    if (common.RESULTS / "drift.json").exists():  # scales not rerun keep their figures (`make bench` reruns all)
        scales = {**common.load_results("drift")["scales"], **scales}
    common.write_results("drift", {"runs": args.runs, "scales": sorted(int(s) for s in scales)},
                         {"scales": scales}, server, echo=False)
    print(table(common.load_results("drift")))


if __name__ == "__main__":
    main()
