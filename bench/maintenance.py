"""Maintenance figures at about 1 million email_events (scale 32) with deliberate bloat.

1. the weekly job (targeted: invalid leftovers, reindex, VACUUM FULL under the cap, analyze) vs the
   runbook's blanket ``VACUUM FULL`` + ``REINDEX DATABASE``, each on its own copy of the same bloated
   database: time, bytes reclaimed, and the longest wait of a concurrent application writer;
2. the daily job's targeted vacuum vs a blanket ``VACUUM ANALYZE``, each on its own copy: tables vacuumed
   and skipped, and time;
3. how the daily job's planning grows: the vacuum and reindex plans (catalog and statistics queries) at each
   of ``--scales``, after the same bloat, with the peak resident memory of a fresh process planning.

Each pair alternates which goes first, ``--runs`` times.

    make bench            # or: .venv/bin/python -m bench.maintenance [--scale 32 --scales 8,32,96 --runs 3]
    .venv/bin/python -m bench.maintenance --table    # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import threading
import time

import psycopg
from psycopg import sql

from bench import common
from coldcopy.maintenance import Maintenance
from coldcopy.testing import local_env

BLOAT = [  # deliberate bloat, the way a busy week makes it
    "UPDATE campaigns SET name = name",
    "UPDATE campaign_sequences SET subject = subject",
    "UPDATE workspaces SET settings = settings",
    "UPDATE email_accounts SET daily_limit = daily_limit",
    "UPDATE leads SET status = status WHERE hashtext(id::text) % 3 = 0",
    "UPDATE campaign_leads SET current_step = current_step WHERE hashtext(id::text) % 2 = 0",
    "DELETE FROM intent_signals WHERE hashtext(id::text) % 2 = 0",
]


def database_size(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def with_writer(dsn: str, work) -> dict:
    """Run ``work()`` while an application-like writer inserts events and updates leads."""
    stop, waits = threading.Event(), []

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            ws = conn.execute("SELECT id FROM workspaces LIMIT 1").fetchone()[0]
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute("INSERT INTO email_events (workspace_id, event_type) VALUES (%s, 'sent')", (ws,))
                conn.execute("UPDATE leads SET last_contacted_at = now() WHERE id = "
                             "(SELECT id FROM leads WHERE workspace_id = %s LIMIT 1)", (ws,))
                conn.execute("UPDATE campaigns SET updated_at = now() WHERE workspace_id = %s", (ws,))
                waits.append(time.perf_counter() - began)
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    before = database_size(dsn)
    started = time.perf_counter()
    try:
        details = work()
    finally:
        elapsed = time.perf_counter() - started
        stop.set()
        thread.join()
    return {"seconds": round(elapsed, 1), "reclaimed_mb": round((before - database_size(dsn)) / 2**20, 1),
            "writer_max_wait_ms": round(max(waits) * 1000, 1), "writes": len(waits), **(details or {})}


def targeted_weekly(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        m = Maintenance(conn)
        full, reported = m.full_vacuum_plan()
        targets = m.invalid_leftovers() + m.reindex_plan() + full + m.stale_statistics()
        outcomes = [m.run(t).outcome for t in targets]
        for target in reported:
            m.report(target)
    return {"actions": len(targets), "skipped": outcomes.count("skipped"),
            "reported_for_pg_repack": [t.name for t in reported]}


def blanket_weekly(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        conn.execute(sql.SQL("REINDEX DATABASE {}").format(sql.Identifier(conn.info.dbname)))
    return {}


def targeted_daily(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        m = Maintenance(conn)
        started = time.perf_counter()
        picked, skipped = m.vacuum_plan()
        for target in picked:
            m.run(target)
    return {"seconds": time.perf_counter() - started, "vacuumed": len(picked), "skipped": len(skipped)}


def blanket_daily(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = sum(len(part) for part in Maintenance(conn).vacuum_plan())
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
    return {"seconds": time.perf_counter() - started, "vacuumed": tables, "skipped": 0}


def plan_once(dsn: str) -> float:
    """The daily and weekly plans; returns seconds. Also the child-process entry point."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        m = Maintenance(conn)
        started = time.perf_counter()
        m.vacuum_plan()
        m.reindex_plan()
        m.full_vacuum_plan()
        return time.perf_counter() - started


def bloat(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in BLOAT:
            conn.execute(statement)
        conn.execute("ANALYZE")


def on_copy(server: str, template_dsn: str, work):
    """``work(dsn)`` on a fresh copy of ``template_dsn``'s database."""
    with common.copy_of(server, template_dsn) as dsn:
        return work(dsn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--scales", default="8,32,96")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("maintenance")))
        return
    scales = [int(s) for s in args.scales.split(",")]
    server = local_env.admin_dsn()
    with common.bench_database(server, args.scale, "maint") as base:
        # The daily job decides from the activity statistics, which a copied database starts without: each
        # copy gets its week of writes itself.
        daily = common.alternating(args.runs, {
            "targeted": lambda: on_copy(server, base, lambda d: (bloat(d), targeted_daily(d))[1]),
            "blanket": lambda: on_copy(server, base, lambda d: (bloat(d), blanket_daily(d))[1])})
        bloat(base)
        weekly = common.alternating(args.runs, {
            "targeted": lambda: on_copy(server, base, lambda d: with_writer(d, lambda: targeted_weekly(d))),
            "blanket": lambda: on_copy(server, base, lambda d: with_writer(d, lambda: blanket_weekly(d)))})
    growth = {}
    for scale in scales:
        with common.bench_database(server, scale, "maint_grow") as dsn:
            bloat(dsn)
            plans = [plan_once(dsn) for _ in range(args.runs)]
            _, peak = common.peak_rss_of_call("maintenance", "plan_once", dsn)
            info = common.template_info(server, scale)
            growth[scale] = {"email_events": info["counts"]["email_events"], "generate_s": info["generate_s"],
                             "plan_s": common.spread(plans, 3), "peak_rss_mb": peak,
                             "daily_targeted_s": round(targeted_daily(dsn)["seconds"], 2)}
    common.write_results(
        "maintenance", {"scale": args.scale, "scales": scales, "runs": args.runs, "order": "alternating",
                        "bloat": BLOAT, "writer": "inserts an event, updates a lead and the campaigns every 10 ms"},
        {"weekly": {kind: {"seconds": common.spread([r["seconds"] for r in runs], 1),
                           "reclaimed_mb": common.spread([r["reclaimed_mb"] for r in runs], 1),
                           "writer_max_wait_ms": common.spread([r["writer_max_wait_ms"] for r in runs], 0),
                           "actions": runs[-1].get("actions")} for kind, runs in weekly.items()},
         "daily": {kind: {"seconds": common.spread([r["seconds"] for r in runs], 2),
                          "vacuumed": runs[-1]["vacuumed"], "skipped": runs[-1]["skipped"]}
                   for kind, runs in daily.items()},
         "growth": growth}, server)


def table(results: dict) -> str:
    s, weekly, daily = results["settings"], results["weekly"], results["daily"]

    def mmm(spread: dict, unit: str = " s", bold: bool = False) -> str:
        median = f"**{spread['median']:,g}**" if bold else f"{spread['median']:,g}"
        return f"{spread['min']:,g}–{median}–{spread['max']:,g}{unit}"

    tables = daily["targeted"]["vacuumed"] + daily["targeted"]["skipped"]
    return "\n".join([
        f"Scale {s['scale']}, then a week's worth of bloat (every campaign, sequence, workspace and account row "
        f"updated, a third of the leads and half of the enrolments updated, half of the intent signals deleted); "
        f"each variant on its own copy of that database, {s['runs']} runs each, alternating which goes first "
        f"(min–median–max), while an application writer inserts events and updates leads and campaigns "
        f"(`make bench`; `python bench/maintenance.py --table` reprints these tables from "
        f"`bench/results/maintenance.json`):",
        "",
        "| | time | reclaimed | writer's longest wait |",
        "|---|---|---|---|",
        *[f"| {label} | {mmm(w['seconds'], bold=ours)} | {mmm(w['reclaimed_mb'], ' MB')} | "
          f"{mmm(w['writer_max_wait_ms'], ' ms', ours)} |"
          for label, w, ours in ((f"weekly job (targeted: {weekly['targeted']['actions']} actions)",
                                  weekly["targeted"], True),
                                 ("runbook: `VACUUM FULL` + `REINDEX DATABASE`", weekly["blanket"], False))],
        "",
        "| daily | tables vacuumed | skipped (with reason) | time |",
        "|---|---|---|---|",
        f"| targeted vacuum (plan included) | {daily['targeted']['vacuumed']} of {tables} | "
        f"{daily['targeted']['skipped']} | {mmm(daily['targeted']['seconds'], bold=True)} |",
        f"| blanket `VACUUM ANALYZE` | {daily['blanket']['vacuumed']} | 0 | {mmm(daily['blanket']['seconds'])} |",
        "",
        "How the planning grows (vacuum, reindex and VACUUM FULL plans after the same bloat; peak RSS of a fresh "
        "process planning, its whole tree, sampled every 20 ms):",
        "",
        "| scale | email_events (generated in) | plans, min–median–max | daily job (plan + vacuums) | peak RSS |",
        "|---|---|---|---|---|",
        *[f"| {scale} | {g['email_events']:,} ({g['generate_s']:.0f} s) | "
          f"{mmm({k: round(v * 1000) for k, v in g['plan_s'].items() if k != 'runs'}, ' ms')} | "
          f"{g['daily_targeted_s']:.2f} s | {g['peak_rss_mb']:.0f} MB |" for scale, g in results["growth"].items()],
    ])


if __name__ == "__main__":
    main()
