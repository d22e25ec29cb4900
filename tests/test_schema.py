"""The schema the migrations build: tenant isolation (RLS enabled and forced), indexes, monthly partitions in UTC,
views, the GDPR audit trail."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from coldcopy.refresh.incremental.summaries import SUMMARIES
from tests.support.schema import (
    TENANT_RELATIONS,
    fetch,
)


def test_every_tenant_table_has_rls_enabled_and_forced(migrated_db):
    rows = fetch(migrated_db, """
        SELECT c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
               EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'workspace_id')""")
    assert len(rows) > 60  # ~50 tables plus the email_events partitions
    assert [r[0] for r in rows if not all(r[1:])] == []
    # and every workspace_id references workspaces
    missing_fk = fetch(migrated_db, """
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public' AND NOT c.relispartition
          AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'workspace_id')
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f'
                          AND k.confrelid = 'public.workspaces'::regclass)""")
    assert missing_fk == []


def test_workspace_isolation_for_every_table_with_workspace_id(two_workspaces):
    dsn, user_a, ws_a, ws_b = two_workspaces
    with psycopg.connect(dsn, autocommit=True) as conn:
        relations = conn.execute(TENANT_RELATIONS).fetchall()
        assert len(relations) > 60
        # Sanity: as the owner, B's rows are there to be hidden (every table that is not a partition).
        for schema, table, kind in relations:
            if kind in "rp" and not table.startswith("email_events_") and f"{schema}.{table}" not in SUMMARIES \
                    and schema != "coldcopy_ops":  # the summaries' captured keys: written by triggers only
                count = conn.execute(sql.SQL("SELECT count(*) FROM {}.{} WHERE workspace_id = %s").format(
                    sql.Identifier(schema), sql.Identifier(table)), (ws_b,)).fetchone()[0]
                assert count >= 1, f"{schema}.{table}: seeding failed"

        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": user_a}),))
        assert conn.execute("SELECT auth.uid()::text").fetchone()[0] == user_a
        leaks, writable, unreadable = [], [], []
        for schema, table, kind in relations:
            name = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            try:
                with conn.transaction():
                    seen_b = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE workspace_id = %s").format(name),
                                          (ws_b,)).fetchone()[0]
                    if seen_b:
                        leaks.append(f"{schema}.{table}")
            except psycopg.errors.InsufficientPrivilege:
                # Not readable at all by the API role: materialized views in the private analytics schema.
                unreadable.append(f"{schema}.{table}")
            if kind in "rp":
                try:
                    with conn.transaction():
                        conn.execute(sql.SQL("INSERT INTO {} (workspace_id) VALUES (%s)").format(name), (ws_b,))
                    writable.append(f"{schema}.{table}")
                except psycopg.errors.InsufficientPrivilege as error:
                    assert "row-level security" in str(error) or "permission denied" in str(error)
        assert leaks == [], f"workspace B rows visible to A: {leaks}"
        assert writable == [], f"A could insert rows for B into: {writable}"
        assert all(r.startswith(("analytics.", "coldcopy_ops.")) for r in unreadable), unreadable
        # The summaries are read with the tenant's own rights (306): readable, isolated by RLS (no leak above).
        assert not set(SUMMARIES) & set(unreadable)

        # A still sees its own rows in an ordinary table and through the dashboard views.
        assert conn.execute("SELECT count(*) FROM leads WHERE workspace_id = %s", (ws_a,)).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM dashboard_workspace_usage").fetchone()[0] == 1


def test_service_role_bypasses_rls(two_workspaces):
    dsn, _, ws_a, ws_b = two_workspaces
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET ROLE service_role")
        seen = conn.execute("SELECT count(DISTINCT workspace_id) FROM leads").fetchone()[0]
    assert seen == 2


def test_composite_indexes(migrated_db):
    composite = fetch(migrated_db, """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.indnkeyatts >= 2 AND n.nspname IN ('public', 'analytics') AND NOT t.relispartition""")
    assert len(composite) >= 50
    definitions = [d for _, d in composite]
    assert any(re.search(r"ON public\.leads USING btree \(workspace_id, email\)", d) for d in definitions)
    assert sum("(workspace_id, created_at DESC)" in d for d in definitions) >= 8
    assert sum("(workspace_id, status)" in d for d in definitions) >= 10


def test_email_events_monthly_partitions_without_default(migrated_db):
    [(strategy, keys)] = fetch(migrated_db, """
        SELECT p.partstrat, pg_get_partkeydef(p.partrelid) FROM pg_partitioned_table p
        WHERE p.partrelid = 'public.email_events'::regclass""")
    assert strategy == "r" and keys == "RANGE (occurred_at)"
    defaults = fetch(migrated_db, """SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'public.email_events'::regclass AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'""")
    assert defaults == [(0,)]
    with psycopg.connect(migrated_db) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        parts = conn.execute(
            "SELECT name, range_start, range_end FROM app.email_events_partitions ORDER BY range_start"
        ).fetchall()
    now = datetime.now(UTC)
    expected = []
    for offset in range(-12, 4):
        year, month = divmod(now.year * 12 + now.month - 1 + offset, 12)
        expected.append(f"email_events_{year:04d}_{month + 1:02d}")
    assert [p[0] for p in parts] == expected
    for (_, start, end), (_, next_start, _) in zip(parts, parts[1:], strict=False):
        assert end == next_start and start.day == 1 and start.hour == 0 and start.tzinfo is not None
    # each partition has the parent's indexes
    [(parent_indexes,)] = fetch(migrated_db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'email_events'")
    [(child_indexes,)] = fetch(migrated_db, f"SELECT count(*) FROM pg_indexes WHERE tablename = '{expected[-1]}'")
    assert child_indexes == parent_indexes


def test_partition_helpers_use_utc_months_whatever_the_session_time_zone(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        # One month after March 2026 (DST starts mid-March) is April, not a day in late March.
        [(start,)] = conn.execute(
            "SELECT app.month_start_utc('2026-03-01 00:00+00', 1) AT TIME ZONE 'UTC'").fetchall()
        assert start == datetime(2026, 4, 1)
        # The reference: 00:00 UTC on the 1st of the UTC month 3 ahead, which is the evening before, the month
        # before, in New York. (It was now() + interval '3 months', added in the session's time zone: an evening
        # in New York at the end of November landed on 1 March UTC, one month further than the test expected.)
        ref, local_month = conn.execute(
            "SELECT r, extract(month FROM r)::int FROM app.month_start_utc(now(), 3) r").fetchone()
        ref_utc = ref.astimezone(UTC)
        assert local_month != ref_utc.month  # the edge a session-time-zone month would fall off
        wanted = []
        for offset in range(7):
            year, month = divmod(ref_utc.year * 12 + ref_utc.month - 1 + offset, 12)
            wanted.append(f"email_events_{year:04d}_{month + 1:02d}")
        existing = {name for (name,) in conn.execute("SELECT name FROM app.email_events_partitions")}
        created = conn.execute("SELECT * FROM app.ensure_email_events_partitions(0, 6, %s)", (ref,)).fetchall()
        assert [name for (name,) in created] == [name for name in wanted if name not in existing]
        assert conn.execute("SELECT * FROM app.ensure_email_events_partitions(0, 6, %s)", (ref,)).fetchall() == []


def test_every_dashboard_aggregate_is_a_summary_table(two_workspaces):
    """No materialized view is left in analytics: the seven are summary tables (305, 307, 308), each beside its
    definition, maintained by deltas."""
    dsn = two_workspaces[0]
    assert fetch(dsn, "SELECT matviewname FROM pg_matviews WHERE schemaname = 'analytics'") == []
    tables = {t for (t,) in fetch(dsn, "SELECT relname FROM pg_class WHERE relnamespace = 'analytics'::regnamespace "
                                       "AND relkind = 'r'")}
    assert {s.split(".")[1] for s in SUMMARIES} <= tables and len(SUMMARIES) == 7


def test_gdpr_audit_trail_records_changes_without_values(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        user, ws = uuid.uuid4(), uuid.uuid4()
        conn.execute("INSERT INTO users (id, email) VALUES (%s, 'owner@example.com')", (user,))
        conn.execute("INSERT INTO workspaces (id, name, slug, owner_id) VALUES (%s, 'w', 'w', %s)", (ws, user))
        lead = conn.execute("INSERT INTO leads (workspace_id, email, first_name) VALUES (%s, 'jane@example.com', "
                            "'Jane') RETURNING id", (ws,)).fetchone()[0]
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (json.dumps({"sub": str(user)}),))
        conn.execute("UPDATE leads SET first_name = 'Janet' WHERE id = %s", (lead,))
        conn.execute("UPDATE leads SET first_name = 'Janet' WHERE id = %s", (lead,))  # no change: not logged
        conn.execute("DELETE FROM leads WHERE id = %s", (lead,))
        rows = conn.execute("SELECT action, changed_columns, actor_id, workspace_id FROM gdpr_audit_log "
                            "WHERE table_name = 'public.leads' AND row_id = %s ORDER BY id", (str(lead),)).fetchall()
        assert [r[0] for r in rows] == ["INSERT", "UPDATE", "DELETE"]
        assert rows[1][1] == ["first_name"] and rows[1][2] == user and rows[1][3] == ws
        log_text = conn.execute("SELECT string_agg(row_to_json(l)::text, '') FROM gdpr_audit_log l").fetchone()[0]
        assert "Jane" not in log_text and "jane@example.com" not in log_text
    tables = {t for (t,) in fetch(migrated_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"consent_records", "data_subject_requests", "data_retention_policies", "gdpr_audit_log"} <= tables
