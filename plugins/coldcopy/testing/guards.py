"""Guards for classes of holes, not instances: run by the tests against every database they build.

- :func:`definer_paths`: every ``SECURITY DEFINER`` function the project owns runs with ``search_path =
  pg_catalog, pg_temp``. An empty path (or one without ``pg_catalog`` first) still looks in the caller's
  ``pg_temp`` first for types and tables, so a caller's ``pg_temp.date`` domain with a CHECK calling the
  caller's own function runs that function as the owner. With ``pg_catalog`` first every built-in type
  resolves there; ``pg_temp`` is never searched for functions or operators.
- :func:`writable_public_views`: no view in ``public`` grants a write to ``anon`` or ``authenticated``.
  Supabase's default privileges hand ALL on every new public object to the API roles, and a view over one
  table is auto-updatable.
- :func:`cross_workspace_joins`: every view or materialized view that joins two tenant rows by id also joins
  them by workspace, so one tenant's writes cannot move another's figures.
"""

from __future__ import annotations

import re

import psycopg

# The platform's schemas (Supabase): their functions and views are the platform's, not the project's.
PLATFORM_SCHEMAS = ("pg_catalog", "information_schema", "auth", "storage", "realtime", "extensions", "graphql",
                    "graphql_public", "vault", "pgsodium", "pgsodium_masks", "supabase_functions",
                    "supabase_migrations", "net", "cron", "pgbouncer", "pgtle", "_realtime", "_analytics")
# pg_temp named, and last: a path without it (even "pg_catalog" alone) still searches pg_temp FIRST.
SAFE_PATHS = {"search_path=pg_catalog, pg_temp", "search_path=pg_catalog,pg_temp",
              'search_path="pg_catalog", "pg_temp"'}
API_ROLES = ("anon", "authenticated")


def definer_paths(conn: psycopg.Connection) -> list[str]:
    """The project's SECURITY DEFINER functions whose search_path is not ``pg_catalog, pg_temp``: ``[]`` is safe.
    The project's: in a schema that is not the platform's, or the platform's pgbouncer when the current login
    owns it (it made it: not on Supabase)."""
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE p.prosecdef AND n.nspname NOT LIKE 'pg\\_%%' "
        "AND (n.nspname <> ALL(%s) OR (n.nspname = 'pgbouncer' AND pg_has_role(p.proowner, 'USAGE')))",
        (list(PLATFORM_SCHEMAS),)).fetchall()
    bad = []
    for name, config in rows:
        paths = [c for c in (config or []) if c.startswith("search_path=")]
        if not paths or paths[-1] not in SAFE_PATHS:
            bad.append(f"{name}: {paths[-1] if paths else 'no search_path'}")
    return sorted(bad)


def writable_public_views(conn: psycopg.Connection) -> list[str]:
    """``view: role can PRIVILEGE`` for each write the API roles hold on a view of public: ``[]`` is safe."""
    roles = [r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                        (list(API_ROLES),)).fetchall()]
    rows = conn.execute(
        "SELECT c.oid::regclass::text, r.role, p.priv FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN unnest(%s::text[]) r(role) "
        "CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p(priv) "
        "WHERE n.nspname = 'public' AND c.relkind = 'v' AND has_table_privilege(r.role, c.oid, p.priv) "
        "ORDER BY 1, 2, 3", (roles,)).fetchall()
    return [f"{view}: {role} can {priv}" for view, role, priv in rows]


# ``a.x_id = b.id`` as pg_get_viewdef writes it (parenthesised, qualified by alias or table name).
_ID_JOIN = re.compile(r"\(?(\w+)\.(\w+) = (\w+)\.(\w+)\)?")


def cross_workspace_joins(conn: psycopg.Connection, schemas: tuple[str, ...] = ("public", "analytics")) -> list[str]:
    """``view: a.x = b.y`` for each join between two relations by id that is not matched by a join of their
    ``workspace_id``s, in views and materialized views reading two or more tenant tables: ``[]`` is safe."""
    views = conn.execute(
        "SELECT c.oid::regclass::text, pg_get_viewdef(c.oid), "
        "  (SELECT count(DISTINCT d.refobjid) FROM pg_rewrite w JOIN pg_depend d ON d.objid = w.oid "
        "   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attname = 'workspace_id' "
        "   JOIN pg_class t ON t.oid = d.refobjid AND t.relkind IN ('r', 'p') "
        "   WHERE w.ev_class = c.oid AND d.refobjid <> c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('v', 'm') ORDER BY 1", (list(schemas),)).fetchall()
    bad = []
    for view, text, tenant_tables in views:
        if tenant_tables < 2:
            continue
        pairs = set()
        for left, lcol, right, rcol in _ID_JOIN.findall(text):
            if left != right and lcol == rcol == "workspace_id":
                pairs.add(frozenset((left, right)))
        for left, lcol, right, rcol in _ID_JOIN.findall(text):
            if left == right or "workspace_id" in (lcol, rcol) or not (lcol.endswith("id") and rcol.endswith("id")):
                continue
            if frozenset((left, right)) not in pairs:
                bad.append(f"{view}: {left}.{lcol} = {right}.{rcol} without {left}.workspace_id = {right}.workspace_id")
    return bad


def api_role_powers(conn: psycopg.Connection) -> list[str]:
    """``relation: role can PRIVILEGE`` for what no tenant needs and a tenant login could abuse on public's tables
    and sequences (Supabase's default privileges grant it): TRIGGER (hang its own function on a table, to run as
    the next writer), TRUNCATE (ignores RLS), REFERENCES; UPDATE on a sequence (setval exhausts it)."""
    roles = [r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                        (list(API_ROLES),)).fetchall()]
    rows = conn.execute(
        "SELECT c.oid::regclass::text, r.role, p.priv FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN unnest(%s::text[]) r(role) "
        "CROSS JOIN unnest(ARRAY['TRUNCATE', 'TRIGGER', 'REFERENCES', 'UPDATE']) p(priv) "
        "WHERE n.nspname = 'public' AND ((c.relkind IN ('r', 'p') AND p.priv <> 'UPDATE' "
        "  AND has_table_privilege(r.role, c.oid, p.priv)) "
        " OR (c.relkind = 'S' AND p.priv = 'UPDATE' AND has_sequence_privilege(r.role, c.oid, 'UPDATE'))) "
        "ORDER BY 1, 2, 3", (roles,)).fetchall()
    return [f"{rel}: {role} can {priv}" for rel, role, priv in rows]


def callable_trigger_functions(conn: psycopg.Connection) -> list[str]:
    """The project's trigger functions the API roles may execute (so hang on a table of their choosing): none
    needs EXECUTE to fire."""
    roles = [r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                                        (list(API_ROLES),)).fetchall()]
    rows = conn.execute(
        "SELECT p.oid::regprocedure::text, r.role FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "CROSS JOIN unnest(%s::text[]) r(role) "
        "WHERE p.prorettype = 'trigger'::regtype AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> ALL(%s) "
        "AND has_function_privilege(r.role, p.oid, 'EXECUTE') ORDER BY 1, 2",
        (roles, list(PLATFORM_SCHEMAS))).fetchall()
    return [f"{function}: {role} can EXECUTE" for function, role in rows]


def all_violations(conn: psycopg.Connection) -> dict[str, list[str]]:
    """Every guard's findings (only those with some)."""
    found = {"SECURITY DEFINER without search_path = pg_catalog, pg_temp": definer_paths(conn),
             "public views writable by the API roles": writable_public_views(conn),
             "tenant powers over public tables and sequences": api_role_powers(conn),
             "trigger functions the API roles may execute": callable_trigger_functions(conn),
             "joins of tenant rows without the workspace": cross_workspace_joins(conn)}
    return {k: v for k, v in found.items() if v}
