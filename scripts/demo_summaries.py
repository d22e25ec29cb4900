"""What `make demo` prints after each job: read back from the target database (scripts/demo.py)."""

from __future__ import annotations

import psycopg


def print_schema_summary(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        history = conn.execute(
            "SELECT version, name, phase, transactional, lock_retries, duration_ms "
            "FROM coldcopy_ops.schema_migrations ORDER BY version"
        ).fetchall()
        facts = conn.execute("""
            SELECT
              (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
              (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relrowsecurity AND c.relforcerowsecurity),
              (SELECT count(*) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
                JOIN pg_namespace n ON n.oid = t.relnamespace
                WHERE i.indnkeyatts >= 2 AND n.nspname IN ('public', 'analytics') AND NOT t.relispartition),
              (SELECT count(*) FROM app.email_events_partitions),
              (SELECT min(name) || ' .. ' || max(name) FROM app.email_events_partitions),
              (SELECT count(*) FROM pg_matviews WHERE schemaname = 'analytics'),
              (SELECT count(*) FROM pg_views WHERE schemaname = 'analytics' AND viewname LIKE '%\\_definition'),
              current_setting('server_version')""").fetchone()
    print("\nMigrations applied (coldcopy_ops.schema_migrations):")
    print(f"  {'version':>7}  {'name':34} {'phase':>5}  {'mode':13} {'lock retries':>12} {'ms':>6}")
    for version, name, phase, transactional, retries, ms in history:
        mode = "transaction" if transactional else "no txn (CIC)"
        print(f"  {version:>7}  {name:34} {phase:>5}  {mode:13} {retries:>12} {ms:>6}")
    tables, rls, composite, partitions, partition_range, matviews, summaries, server_version = facts
    print(f"\nSchema on PostgreSQL {server_version}: {tables} tables, {rls} with RLS enabled+forced, "
          f"{composite} composite indexes, {matviews} materialized views, {summaries} incremental summaries,\n"
          f"  email_events: {partitions} monthly partitions ({partition_range}), no DEFAULT partition")


def print_refresh_summary(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT view_name, action, coalesce(mode, '-'), duration_ms, coalesce(row_count::text, '-'), reason "
            "FROM coldcopy_ops.mv_refresh_log ORDER BY id"
        ).fetchall()
    print("\nMaterialized-view refreshes and summary applies (coldcopy_ops.mv_refresh_log):")
    for view, action, mode, ms, rows_, reason in rows:
        print(f"  {view:38} {action:9} {mode:10} {ms:>6} ms {rows_:>6} rows  {reason[:70]}")


def print_partition_summary(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT partition_name, state, row_count, byte_size, object_key "
                            "FROM coldcopy_ops.partition_archive ORDER BY 1").fetchall()
        attached = conn.execute("SELECT min(name), max(name), count(*) FROM app.email_events_partitions").fetchone()
    print("\nPartition rotation (coldcopy_ops.partition_archive):")
    for name, state, rows_, size, key in rows:
        print(f"  {name:22} {state:9} {rows_:>7} rows {size:>9} bytes  s3://…/{key}")
    print(f"  attached now: {attached[2]} partitions, {attached[0]} .. {attached[1]}")


def print_backup_summary(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT object_key, retention_class, byte_size, verification, verification_ms "
                            "FROM coldcopy_ops.backup_log ORDER BY started_at").fetchall()
    print("\nBackups (coldcopy_ops.backup_log):")
    for key, klass, size, verification, ms in rows:
        print(f"  {klass:10} {size:>10} bytes  {verification:8} ({ms} ms)  {key}")


def print_maintenance_summary(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT action, outcome, count(*), sum(duration_ms) FROM coldcopy_ops.maintenance_log "
                            "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
    print("\nMaintenance (coldcopy_ops.maintenance_log):")
    for action, outcome, n, ms in rows:
        print(f"  {action:20} {outcome:9} {n:>4} action(s) {ms:>7} ms")


def gdpr_requests(dsn: str) -> list:
    """Two verified requests for the demo: an access request and an erasure, of two different leads."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        people = conn.execute("SELECT workspace_id, email FROM leads ORDER BY id LIMIT 2").fetchall()
        return [conn.execute("INSERT INTO data_subject_requests (workspace_id, email, request_type, status) "
                             "VALUES (%s, %s, %s, 'verified') RETURNING id", (ws, email, kind)).fetchone()[0]
                for (ws, email), kind in zip(people, ("access", "erasure"), strict=True)]


def print_gdpr_summary(dsn: str, dpo) -> None:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT request_type, status, left(notes, 90) FROM data_subject_requests "
                            "WHERE status = 'completed' ORDER BY completed_at").fetchall()
        ledger = conn.execute("SELECT count(*) FROM coldcopy_ops.erasure_ledger").fetchone()[0]
    print("\nGDPR requests (data_subject_requests):")
    for kind, status, notes in rows:
        print(f"  {kind:8} {status:10} {notes}")
    print(f"  erasure ledger entries: {ledger}; export links delivered to the DPO channel: {len(dpo.received)}")
