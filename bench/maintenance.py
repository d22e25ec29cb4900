"""Maintenance figures at about 1 million email_events (scale 32) with deliberate bloat.

1. the weekly job (targeted: invalid leftovers, reindex, VACUUM FULL under the cap, analyze) vs the
   runbook's blanket ``VACUUM FULL`` + ``REINDEX DATABASE``, each on its own copy of the same bloated
   database: time, bytes reclaimed, and the longest wait of a concurrent application writer;
2. the daily job's targeted vacuum vs a blanket ``VACUUM ANALYZE``: tables vacuumed and skipped, and time.

    make bench            # or: .venv/bin/python bench/maintenance.py [--scale 32]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "scripts")]

import psycopg  # noqa: E402

import generate_data  # noqa: E402
import local_env  # noqa: E402
from coldcopy.maintenance import Maintenance  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402

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
        outcomes = [m.run(t) for t in targets]
        for target in reported:
            m.report(target)
    return {"actions": len(targets), "skipped": outcomes.count("skipped"),
            "reported_for_pg_repack": [t.name for t in reported]}


def blanket_weekly(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        conn.execute(f'REINDEX DATABASE "{conn.info.dbname}"')
    return {}


def daily(dsn: str) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        m = Maintenance(conn)
        picked, skipped = m.vacuum_plan()
        started = time.perf_counter()
        for target in picked:
            m.run(target)
        targeted_s = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        blanket_s = time.perf_counter() - started
    return {"tables": len(picked) + len(skipped), "targeted_vacuumed": len(picked), "targeted_skipped": len(skipped),
            "targeted_s": round(targeted_s, 1), "blanket_vacuum_analyze_s": round(blanket_s, 1),
            "blanket_vacuumed": len(picked) + len(skipped)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    base = f"cc_bench_maint_{uuid.uuid4().hex[:6]}"
    created = [base]
    try:
        dsn = local_env.create_database(server, base)
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        generate_data.generate(dsn, scale=args.scale)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            for statement in BLOAT:
                conn.execute(statement)
            conn.execute("ANALYZE")
        results = {}
        for label, work in (("targeted_weekly", targeted_weekly), ("blanket_vacuum_full_reindex", blanket_weekly)):
            copy = f"{base}_{label[:5]}"
            created.append(copy)
            copy_dsn = local_env.create_database(server, copy, template=base)
            results[label] = with_writer(copy_dsn, lambda d=copy_dsn, w=work: w(d))
        results["daily"] = daily(dsn)
    finally:
        for name in created:
            local_env.drop_database(server, name)
    summary = {"postgresql": version, "scale": args.scale, **results}
    (ROOT / "bench" / "results" / "maintenance.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
