"""GDPR figures at about 1 million email_events (scale 32), each variant beside its naive baseline.

1. erasure of one subject (the leads with the most events): ``Gdpr.erase`` (every personal-data table, batches
   under lock_timeout, suppression, audit, ledger) vs the naive ``DELETE FROM leads`` relying on ON DELETE
   CASCADE (which leaves the events, the consent records and the audit trail behind). Alternating, a
   different subject each time, ``--subjects`` of each: time and rows touched;
2. retention of one policy over ``--expired`` (100k) expired email_events of one workspace, on a copy each,
   while an application writer inserts events into that workspace: ``apply_retention`` (batches of 2,000)
   vs one ``DELETE``: time, batches, and the writer's longest wait.

    make bench            # or: .venv/bin/python -m bench.gdpr [--scale 32 --subjects 5 --expired 100000 --runs 2]
    .venv/bin/python -m bench.gdpr --table           # its tables in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import psycopg

from bench import common
from coldcopy.gdpr import Gdpr
from coldcopy.refresh.erasures import Dashboards
from coldcopy.testing import local_env


def spread(values: list[float]) -> dict:
    return common.spread(values, 1)


def erasures(dsn: str, subjects: int) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        picked = conn.execute("SELECT l.workspace_id, l.email FROM leads l JOIN email_events e ON e.lead_id = l.id "
                              "GROUP BY 1, 2 ORDER BY count(*) DESC, 2 LIMIT %s", (2 * subjects,)).fetchall()
        gdpr = Gdpr(conn, dashboards=Dashboards, keyring=common.KEYRING, pepper=common.PEPPER)
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
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="print the docs/benchmarks.md tables of the last results")
    args = parser.parse_args()
    if args.table:
        print(table(common.load_results("gdpr")))
        return
    server = local_env.admin_dsn()
    with common.bench_database(server, args.scale, "gdpr") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            workspace = conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0]
            conn.execute("INSERT INTO email_events (workspace_id, event_type, occurred_at) SELECT %s, 'sent', "
                         "now() - interval '200 days' - g * interval '1 second' FROM generate_series(1, %s) g",
                         (workspace, args.expired))
            policy_id = conn.execute("INSERT INTO data_retention_policies (workspace_id, table_name, retain_for) "
                                     "VALUES (%s, 'email_events', '180 days') RETURNING id", (workspace,)).fetchone()[0]
            expired = conn.execute("SELECT count(*) FROM email_events WHERE workspace_id = %s "
                                   "AND occurred_at < now() - interval '180 days'", (workspace,)).fetchone()[0]
            conn.execute("ANALYZE")

        def on_copy(policy: bool) -> dict:
            with common.copy_of(server, dsn) as copy_dsn, psycopg.connect(copy_dsn, autocommit=True) as conn:
                if policy:
                    gdpr = Gdpr(conn, dashboards=Dashboards, keyring=common.KEYRING, pepper=common.PEPPER)
                    return with_writer(copy_dsn, workspace, lambda: gdpr.apply_retention(gdpr.policy(policy_id)))

                def delete() -> dict:
                    deleted = conn.execute("DELETE FROM email_events WHERE workspace_id = %s AND occurred_at < "
                                           "now() - interval '180 days'", (workspace,)).rowcount
                    return {"rows": deleted, "batches": 1}
                return with_writer(copy_dsn, workspace, delete)

        retention = common.alternating(args.runs, {"policy_batches": lambda: on_copy(True),
                                                   "one_delete": lambda: on_copy(False)})
        erasure = erasures(dsn, args.subjects)
    common.write_results(
        "gdpr", {"scale": args.scale, "subjects": args.subjects, "expired": args.expired, "runs": args.runs,
                 "order": "alternating", "batch_size": 2000},
        {"email_events": common.template_info(server, args.scale)["counts"]["email_events"],
         "expired_rows": expired, "erasure": erasure, "retention": retention}, server)


def table(results: dict) -> str:
    s, e, r = results["settings"], results["erasure"], results["retention"]

    def mmm(spread: dict, unit: str, bold: bool = False) -> str:
        median = f"**{spread['median']:g}**" if bold else f"{spread['median']:g}"
        return f"{spread['min']:g}–{median}–{spread['max']:g} {unit}"

    def runs(kind: str, key: str, fmt: str) -> str:
        return ", ".join(fmt.format(run[key]) for run in r[kind])

    return "\n".join([
        f"Scale {s['scale']} ({results['email_events']:,} email_events), PostgreSQL "
        f"{results['machine']['postgresql']}, {results['machine']['cores']} cores: {s['subjects']} subjects per "
        f"variant, alternating (`make bench`; `python bench/gdpr.py --table` reprints these tables from "
        f"`bench/results/gdpr.json`).",
        "",
        "| | time (min–median–max) | rows |",
        "|---|---|---|",
        f"| erasure of one subject (`Gdpr.erase`: every personal-data table found in the catalog, batches under "
        f"lock_timeout, suppression, audit, ledger) | {mmm(e['erase_ms'], 'ms', True)} | "
        f"{e['erase_rows_touched']['min']:g}–{e['erase_rows_touched']['max']:g} touched |",
        f"| naive `DELETE FROM leads …` relying on ON DELETE CASCADE | {mmm(e['naive_cascade_delete_ms'], 'ms')} | "
        f"{e['naive_leads_deleted']['max']:g} lead (its events, consent records and audit rows stay behind) |",
        "",
        f"Retention of one policy over {results['expired_rows']:,} expired email_events of one workspace, on a copy "
        f"each ({s['runs']} runs each, alternating which goes first), while an application writer inserts into "
        f"that workspace:",
        "",
        "| | time | batches | writer's longest wait |",
        "|---|---|---|---|",
        f"| `gdpr_retention` (`apply_retention`, {s['batch_size']:,} per batch) | "
        f"{runs('policy_batches', 'seconds', '{:.2f} s')} | {r['policy_batches'][0]['batches']} | "
        f"{runs('policy_batches', 'writer_longest_wait_ms', '{:.1f} ms')} |",
        f"| one `DELETE` | {runs('one_delete', 'seconds', '{:.2f} s')} | 1 | "
        f"{runs('one_delete', 'writer_longest_wait_ms', '{:.1f} ms')} |",
    ])


if __name__ == "__main__":
    main()
