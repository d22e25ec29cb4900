"""What the GDPR tests share: a subject, a request, a Gdpr on a database, a month holding a lead."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy.gdpr import Gdpr
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh.erasures import Dashboards
from tests.conftest import BACKUP_PASSPHRASE, KEYRING, SUBJECT_PEPPER

KEY = KEYRING


def subject_of(dsn: str) -> dict:
    """A lead with messages and events, and its workspace."""
    with psycopg.connect(dsn) as conn:
        lead_id, workspace_id, email = conn.execute("""
            SELECT l.id, l.workspace_id, l.email FROM leads l
            WHERE EXISTS (SELECT 1 FROM email_events e WHERE e.lead_id = l.id)
              AND EXISTS (SELECT 1 FROM email_messages m WHERE m.lead_id = l.id) ORDER BY l.id LIMIT 1""").fetchone()
    return {"lead_id": lead_id, "workspace_id": workspace_id, "email": email}


def request(dsn: str, subject: dict, request_type: str, status: str = "verified", email: str | None = None) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return str(conn.execute(
            "INSERT INTO data_subject_requests (workspace_id, email, request_type, status) VALUES (%s, %s, %s, %s) "
            "RETURNING id", (subject["workspace_id"], email or subject["email"], request_type, status)).fetchone()[0])


def gdpr_on(dsn: str) -> tuple[psycopg.Connection, Gdpr]:
    conn = psycopg.connect(dsn, autocommit=True)
    return conn, Gdpr(conn, dashboards=Dashboards, keyring=KEY,
                      lock_retry=LockRetryPolicy(attempts=3, lock_timeout_ms=500),
                      passphrase=BACKUP_PASSPHRASE, pepper=SUBJECT_PEPPER)


def month_with_a_lead(conn, manager):
    """The oldest archivable month holding a lead's events, and that lead (id, workspace, address)."""
    for month in manager.archive_candidates():
        found = conn.execute(f"SELECT l.id, l.workspace_id, l.email FROM public.{month.name} e "
                             "JOIN leads l ON l.id = e.lead_id ORDER BY e.id LIMIT 1").fetchone()
        if found:
            return month, found
    raise AssertionError("no archivable month holds a lead's events")


def occurrences(dsn: str, needle: str) -> list[str]:
    """Every table and materialized view column (text, json, uuid…) whose values contain ``needle``."""
    found = []
    with psycopg.connect(dsn) as conn:
        columns = conn.execute("""
            SELECT n.nspname, c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND a.attnum > 0 AND NOT a.attisdropped
              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
              AND format_type(a.atttypid, NULL) IN ('text', 'character varying', 'jsonb', 'json', 'uuid', 'text[]',
                                                    'uuid[]', 'citext')""").fetchall()
        for schema, table, column in columns:
            hit = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text LIKE %s)").format(
                sql.Identifier(schema, table), sql.Identifier(column)), (f"%{needle}%",)).fetchone()[0]
            if hit:
                found.append(f"{schema}.{table}.{column}")
    return found


def subjects_of(dsn: str, n: int) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        return [{"lead_id": r[0], "workspace_id": r[1], "email": r[2]} for r in conn.execute("""
            SELECT l.id, l.workspace_id, l.email FROM leads l
            WHERE EXISTS (SELECT 1 FROM email_messages m WHERE m.lead_id = l.id) ORDER BY l.id LIMIT %s""", (n,))]
