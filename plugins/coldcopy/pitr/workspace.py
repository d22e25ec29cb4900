"""One workspace out of a restored copy, for support to copy back what a customer deleted by mistake.

:func:`keep_only` reduces a private restored database to one workspace: its rows of every tenant table (every
table of ``public`` with a ``workspace_id``), its ``workspaces`` row, and the ``users`` its rows refer to (by
any foreign key to ``public.users``): nobody else's personal data leaves the restore. :func:`copy_into_schema`
copies what is left into a new schema of another database (no constraints, no access for anyone but the
owner: a staging copy to read from), registered as a support copy (:mod:`coldcopy.support_copies`: erasures
reach it, ``gdpr_retention`` drops it after 14 days). See docs/pitr.md.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, timedelta

import psycopg
from psycopg import sql

from coldcopy import safe_names, support_copies

log = logging.getLogger(__name__)

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class WorkspaceError(ValueError):
    """A workspace id or schema name that cannot be used."""


def workspace_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(str(value).strip()))
    except ValueError:
        raise WorkspaceError(f"workspace_id {value!r} is not a UUID") from None


def schema_name(conn: psycopg.Connection, value: str) -> str:
    """A new schema's name: lower-case letters, digits and underscores, and not taken in ``conn``'s database."""
    name = str(value or "").strip()
    if not _SCHEMA.match(name) or name.startswith("pg_") or name in ("public", "information_schema"):
        raise WorkspaceError(f"target_schema {value!r}: lower-case letters, digits and _, not public or pg_*")
    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone():
        raise WorkspaceError(f"schema {name!r} exists already in {conn.info.dbname!r}: choose a new name")
    return name


def _tables(conn) -> list[tuple[str, str, bool]]:
    """``(schema, table, has workspace_id)`` of every table outside the system schemas (partitions through their
    root), ``public`` first."""
    return conn.execute(
        "SELECT n.nspname, c.relname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
        "AND a.attname = 'workspace_id' AND NOT a.attisdropped) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname NOT LIKE 'pg\\_%%' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "ORDER BY n.nspname <> 'public', 1, 2").fetchall()


def keep_only(dsn: str, workspace_id: str) -> dict[str, int]:
    """Delete every other workspace's rows from the (private, restored) database ``dsn``; returns the rows
    kept per table."""
    workspace_id = workspace_uuid(workspace_id)
    kept: dict[str, int] = {}
    with psycopg.connect(dsn) as conn:
        if not conn.execute("SELECT 1 FROM public.workspaces WHERE id = %s", (workspace_id,)).fetchone():
            raise WorkspaceError(f"workspace {workspace_id} does not exist at that point in time")
        conn.execute("SET session_replication_role = replica")  # the copy is private: no triggers, no cascades
        tables = _tables(conn)
        # Every schema's tenant tables (not only public), ColdCopy's own records (GDPR requests, health history…
        # name other tenants' people), and the materialized views (analytics.*) recomputed from what is left.
        # Before, only public was filtered: analytics.* kept every tenant's rows.
        for schema, table, tenant in tables:
            if tenant:
                conn.execute(sql.SQL("DELETE FROM {} WHERE workspace_id IS DISTINCT FROM %s").format(
                    sql.Identifier(schema, table)), (workspace_id,))
        for (table,) in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'coldcopy_ops' AND c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition AND c.relname NOT IN ('schema_migrations', 'schema_migration_parts', "
                "'ops_objects')").fetchall():
            conn.execute(sql.SQL("TRUNCATE {}").format(safe_names.relation(conn, table)))
        conn.execute("DELETE FROM public.workspaces WHERE id <> %s", (workspace_id,))
        referring = conn.execute(
            "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.confrelid = 'public.users'::regclass AND cardinality(c.conkey) = 1"
        ).fetchall()
        if referring:
            users = sql.SQL(" UNION ").join(
                sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), safe_names.relation(conn, table))
                for table, column in referring)
            conn.execute(sql.SQL("DELETE FROM public.users WHERE id NOT IN (SELECT * FROM ({}) u "
                                 "WHERE u IS NOT NULL)").format(users))
            if conn.execute("SELECT to_regclass('auth.users') IS NOT NULL").fetchone()[0]:  # Supabase's logins
                conn.execute("DELETE FROM auth.users WHERE id NOT IN (SELECT id FROM public.users)")
        conn.execute("SET session_replication_role = origin")
        for (view,) in conn.execute(
                "SELECT format('%I.%I', schemaname, matviewname) FROM pg_matviews ORDER BY 1").fetchall():
            conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(safe_names.relation(conn, view)))
        for _, table, _ in (t for t in tables if t[0] == "public"):
            kept[f"public.{table}"] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier("public", table))).fetchone()[0]
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")  # pg_statistic's most common values were every tenant's: computed again
    log.info("kept workspace %s: %d rows in %d tables", workspace_id, sum(kept.values()),
             sum(1 for n in kept.values() if n))
    return kept


def copy_into_schema(source_dsn: str, target_dsn: str, schema: str, *, workspace_id: str, origin: str | None = None,
                     ttl: timedelta = support_copies.DEFAULT_TTL) -> dict[str, int]:
    """Copy every non-empty table of ``public`` in ``source_dsn`` into the new ``schema`` of ``target_dsn``
    (columns and types as the source has them; rows by COPY), registered as a support copy of ``workspace_id``
    (:mod:`coldcopy.support_copies`: erasures reach it, it is dropped after ``ttl``) in the same transaction;
    ``origin`` says where it came from (backup, as_of).
    Returns rows per table."""
    copied: dict[str, int] = {}
    workspace_id = workspace_uuid(workspace_id)
    with psycopg.connect(target_dsn, autocommit=True) as registry:
        support_copies.ensure(registry)
    with psycopg.connect(source_dsn) as source, psycopg.connect(target_dsn) as target:
        schema = schema_name(target, schema)
        target.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        target.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(sql.Identifier(schema)))
        expires = support_copies.register(target, schema, workspace_id, source=origin, ttl=ttl)
        target.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(schema), sql.Literal(
            f"coldcopy support copy of workspace {workspace_id}, expires {expires.astimezone(UTC):%Y-%m-%d %H:%M} "
            "UTC")))
        for _, table, _ in (t for t in _tables(source) if t[0] == "public"):
            rows = source.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))
                                  ).fetchone()[0]
            if not rows:
                continue
            columns = source.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                (sql.Identifier("public", table).as_string(source),)).fetchall()
            target.execute(sql.SQL("CREATE TABLE {} ({})").format(
                sql.Identifier(schema, table),
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))  # catalog text
                                   for name, kind in columns)))
            with source.cursor().copy(sql.SQL("COPY (SELECT * FROM {}) TO STDOUT").format(  # partitioned too
                    sql.Identifier("public", table))) as out, \
                    target.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(schema, table))) as into:
                for chunk in out:
                    into.write(chunk)
            copied[f"{schema}.{table}"] = rows
        target.commit()
    log.info("copied %d rows of %d tables into schema %s (a support copy, expires %s)", sum(copied.values()),
             len(copied), schema, expires)
    return copied
