"""GDPR figures at about 1 million email_events (scale 32), each variant beside its naive baseline.

1. erasure of one subject (the leads with the most events): ``Gdpr.erase`` (every personal-data table, batches
   under lock_timeout, suppression, audit, ledger) vs the naive ``DELETE FROM leads`` relying on ON DELETE
   CASCADE (which leaves the events, the consent records and the audit trail behind). Alternating, a
   different subject each time, ``--subjects`` of each: time and rows touched;
2. retention of one policy over ``--expired`` (100k) expired email_events of one workspace, on a copy each,
   while an application writer inserts events into that workspace: ``apply_retention`` (batches of 2,000)
   vs one ``DELETE``: time, batches, and the writer's longest wait.

    make bench            # or: .venv/bin/python bench/gdpr.py [--scale 32 --subjects 5 --expired 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
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
from coldcopy.gdpr import Gdpr  # noqa: E402
from coldcopy.migration_runner import MigrationRunner  # noqa: E402
from coldcopy.migrations import discover_migrations  # noqa: E402


def spread(values: list[float]) -> dict:
    values = sorted(values)
    return {"min": round(values[0], 1), "median": round(statistics.median(values), 1), "max": round(values[-1], 1)}


def erasures(dsn: str, subjects: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        picked = conn.execute("SELECT l.workspace_id, l.email FROM leads l JOIN email_events e ON e.lead_id = l.id "
                              "GROUP BY 1, 2 ORDER BY count(*) DESC, 2 LIMIT %s", (2 * subjects,)).fetchall()
        gdpr = Gdpr(conn, manifest_key=b"bench")
        gdpr.ensure_refuse_trigger()
        ours, naive, ours_rows, naive_rows = [], [], [], []
        for number, (workspace, email) in enumerate(picked):
            began = time.perf_counter()
            if number % 2 == 0:
                counts = gdpr.erase(gdpr.find(workspace, email=email), str(uuid.uuid4()))
                ours.append((time.perf_counter() - began) * 1000)
                ours_rows.append(sum(counts.values()))
            else:
                deleted = conn.execute("DELETE FROM leads WHERE workspace_id = %s AND email = %s",
                                       (workspace, email)).rowcount
                naive.append((time.perf_counter() - began) * 1000)
                naive_rows.append(deleted)
    return {"erase_ms": spread(ours), "erase_rows_touched": spread(ours_rows),
            "naive_cascade_delete_ms": spread(naive), "naive_leads_deleted": spread(naive_rows),
            "note": "the naive delete cascades to FK children only: email_events (no FK), consent records and "
                    "the audit trail keep the subject"}


def with_writer(dsn: str, workspace, work) -> dict:
    stop, waits = threading.Event(), []

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                began = time.perf_counter()
                conn.execute("INSERT INTO email_events (workspace_id, event_type) VALUES (%s, 'sent')", (workspace,))
                waits.append(time.perf_counter() - began)

    thread = threading.Thread(target=writer)
    thread.start()
    began = time.perf_counter()
    try:
        result = work()
    finally:
        elapsed = time.perf_counter() - began
        stop.set()
        thread.join()
    return {**result, "seconds": round(elapsed, 2), "writer_longest_wait_ms": round(max(waits) * 1000, 1),
            "writer_inserts": len(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=32)
    parser.add_argument("--subjects", type=int, default=5)
    parser.add_argument("--expired", type=int, default=100_000)
    args = parser.parse_args()
    server = local_env.admin_dsn()
    base = f"cc_bench_gdpr_{uuid.uuid4().hex[:6]}"
    created = [base]
    try:
        dsn = local_env.create_database(server, base)
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="bench")
        generate_data.generate(dsn, scale=args.scale)
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            events = conn.execute("SELECT count(*) FROM email_events").fetchone()[0]
            workspace = conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0]
            conn.execute("INSERT INTO email_events (workspace_id, event_type, occurred_at) SELECT %s, 'sent', "
                         "now() - interval '200 days' - g * interval '1 second' FROM generate_series(1, %s) g",
                         (workspace, args.expired))
            policy_id = conn.execute("INSERT INTO data_retention_policies (workspace_id, table_name, retain_for) "
                                     "VALUES (%s, 'email_events', '180 days') RETURNING id", (workspace,)).fetchone()[0]
            expired = conn.execute("SELECT count(*) FROM email_events WHERE workspace_id = %s "
                                   "AND occurred_at < now() - interval '180 days'", (workspace,)).fetchone()[0]
            conn.execute("ANALYZE")
        results = {"erasure": None, "retention": {}}
        for label in ("policy_batches", "one_delete", "policy_batches_again", "one_delete_again"):
            copy = f"{base}_{len(created)}"
            created.append(copy)
            copy_dsn = local_env.create_database(server, copy, template=base)
            with psycopg.connect(copy_dsn, autocommit=True) as conn:
                if label.startswith("policy"):
                    gdpr = Gdpr(conn, manifest_key=b"bench")

                    def work(gdpr=gdpr):
                        return gdpr.apply_retention(gdpr.policy(policy_id))
                else:
                    def work(conn=conn):
                        deleted = conn.execute("DELETE FROM email_events WHERE workspace_id = %s AND occurred_at < "
                                               "now() - interval '180 days'", (workspace,)).rowcount
                        return {"rows": deleted, "batches": 1}
                results["retention"][label] = with_writer(copy_dsn, workspace, work)
            local_env.drop_database(server, copy)
        results["erasure"] = erasures(dsn, args.subjects)
    finally:
        for name in created:
            local_env.drop_database(server, name)
    summary = {"postgresql": version, "scale": args.scale, "email_events": events, "expired_rows": expired,
               "subjects": args.subjects, **results}
    (ROOT / "bench" / "results" / "gdpr.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
