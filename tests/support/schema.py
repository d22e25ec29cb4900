"""What the schema tests share: two workspaces' rows in every tenant table, generic values, a schema dump."""

from __future__ import annotations

import subprocess

import psycopg
from psycopg import sql

from coldcopy.testing import local_env


def fetch(dsn: str, query: str, params=None) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


TENANT_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attname = 'workspace_id' AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


def generic_value(type_name: str, allowed: list[str]) -> str:
    """A SQL expression valid for a NOT NULL column of this type (first allowed value if CHECK-listed)."""
    if allowed:
        return f"'{allowed[0]}'"
    if type_name == "uuid":
        return "gen_random_uuid()"
    if type_name.endswith("[]"):
        return "'{}'"
    return {
        "bigint": "1", "integer": "1", "boolean": "false", "jsonb": "'{}'", "inet": "'127.0.0.1'",
        "date": "current_date", "interval": "'1 day'", "time without time zone": "'09:00'",
        "timestamp with time zone": "now()",
    }.get(type_name.split("(")[0], "'x-' || gen_random_uuid()" if "text" in type_name else "1")


def insert_generic_row(conn, schema: str, table: str, workspace_id: str) -> None:
    """Insert one row for ``workspace_id`` into any tenant table, filling NOT NULL columns generically.

    Runs with session_replication_role = replica, so foreign keys and triggers do not get in the way:
    the row only has to exist for the isolation checks.
    """
    columns = conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
        "  coalesce((SELECT array_agg(m[1]) FROM pg_constraint k, "
        "    regexp_matches(pg_get_constraintdef(k.oid), '''([^'']+)''::text', 'g') m "
        "    WHERE k.conrelid = a.attrelid AND k.contype = 'c' AND k.conkey = ARRAY[a.attnum]), '{}') "
        "FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "  AND a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' AND a.attname <> 'workspace_id'",
        (f"{schema}.{table}",),
    ).fetchall()
    names = [sql.Identifier("workspace_id")] + [sql.Identifier(name) for name, _, _ in columns]
    values = [sql.Literal(workspace_id)] + [
        sql.SQL(f"({generic_value(type_name, allowed)})::{type_name}") for _, type_name, allowed in columns
    ]
    conn.execute(
        sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(names), sql.SQL(", ").join(values)
        )
    )


def populate_analytics(conn) -> None:
    """Every analytics view and summary filled, as production's are."""
    from coldcopy.refresh.dispatch import refresher_for
    from coldcopy.refresh.runs import RefreshRun
    from coldcopy.refresh_schedule import REFRESH_JOBS

    for job in REFRESH_JOBS.values():
        for view in job.views:
            refresher_for(conn, view).run(RefreshRun(run_id="populate"))


def schema_dump(dsn: str) -> str:
    dump = subprocess.run(
        [local_env.executable("pg_dump"), "--schema-only", "--no-owner", "--exclude-schema=coldcopy_ops",
         *local_env.client_args(dsn)],
        check=True, capture_output=True, text=True,
    ).stdout
    # \restrict lines carry a random key per dump (pg_dump 15.14+).
    volatile = ("-- Dumped", "\\restrict", "\\unrestrict")
    return "\n".join(line for line in dump.splitlines() if not line.startswith(volatile))
