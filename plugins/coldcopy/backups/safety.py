"""What matters for safety after a restore: the project's tables' row-level security, policies and API grants.

A restore by a login that is no superuser leaves entries out (:mod:`coldcopy.backups.toc`), and a filter that
leaves out one entry too many — a policy, ``FORCE ROW LEVEL SECURITY``, a revoke — gives a database whose rows
are all there and which serves every tenant's rows to every other. Row counts cannot see that. So the backup
records a **fingerprint** of the source in its signed manifest (``safety``), read in the dump's own snapshot:
per project table (every schema but the system's and the platform's: ``public``, ``app``, ``analytics``,
``coldcopy_ops``…, tables of extensions left out) whether RLS is enabled and forced, every policy (name,
command, permissive or restrictive, roles, ``USING``, ``WITH CHECK``), and what the API roles (``anon``,
``authenticated``, ``service_role``) were granted on it. The verification computes the same from the restored
copy and fails on a difference, naming the table and what differs (:func:`differences`).

Expressions are deparsed with ``search_path = pg_catalog``, so every name in them is qualified the same way on
both sides whatever the sessions' paths.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import tuple_row

API_ROLES = ("anon", "authenticated", "service_role")
# The system's and the platform's schemas (Supabase's services, its extensions): not the project's to prove.
PLATFORM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "auth", "storage", "realtime", "_realtime",
                    "extensions", "graphql", "graphql_public", "pgbouncer", "vault", "pgsodium", "pgsodium_masks",
                    "net", "supabase_functions", "supabase_migrations", "cron", "pgmq", "_analytics", "pgtle")
VERSION = 1

_TABLES = """
SELECT c.oid, format('%%I.%%I', n.nspname, c.relname), c.relrowsecurity, c.relforcerowsecurity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND n.nspname <> ALL (%(platform)s)
  AND n.nspname NOT LIKE 'pg\\_temp\\_%%' AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
  AND (%(tables)s::text[] IS NULL OR c.oid IN (SELECT to_regclass(t) FROM unnest(%(tables)s::text[]) t))
"""
_POLICIES = """
SELECT p.polrelid, p.polname, p.polcmd::text, p.polpermissive,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
             FROM unnest(p.polroles) r ORDER BY 1),
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
FROM pg_policy p WHERE p.polrelid = ANY (%s)
"""
_GRANTS = """
SELECT c.oid, r.rolname, a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = ANY (%s) AND r.rolname = ANY (%s)
"""
_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


def fingerprint(conn: psycopg.Connection, tables: list[str] | None = None) -> dict:
    """The fingerprint of the database ``conn`` is on (of only ``tables``, when given), in ``conn``'s current
    transaction: ``{"version", "api_roles", "tables": {"schema.table": {"rls", "force_rls", "policies",
    "grants"}}}``."""
    cursor = conn.cursor(row_factory=tuple_row)
    path = cursor.execute("SELECT current_setting('search_path')").fetchone()[0]
    cursor.execute("SELECT set_config('search_path', 'pg_catalog', true)")  # every name in expressions qualified
    try:
        rows = cursor.execute(_TABLES, {"platform": list(PLATFORM_SCHEMAS), "tables": tables}).fetchall()
        names = {oid: name for oid, name, _, _ in rows}
        found = {name: {"rls": bool(rls), "force_rls": bool(force), "policies": {}, "grants": {}}
                 for _, name, rls, force in rows}
        for relid, policy, command, permissive, roles, using, check in cursor.execute(_POLICIES, (list(names),)):
            found[names[relid]]["policies"][policy] = {
                "command": _COMMANDS.get(command, command), "permissive": bool(permissive), "roles": list(roles),
                "using": using, "with_check": check}
        for relid, role, privilege in cursor.execute(_GRANTS, (list(names), list(API_ROLES))):
            found[names[relid]]["grants"].setdefault(role, []).append(privilege)
    finally:
        cursor.execute("SELECT set_config('search_path', %s, true)", (path,))
    for table in found.values():
        table["grants"] = {role: sorted(privileges) for role, privileges in sorted(table["grants"].items())}
    return {"version": VERSION, "api_roles": list(API_ROLES), "tables": dict(sorted(found.items()))}


def differences(recorded: dict, restored: dict) -> list[str]:
    """Every way the restored copy's fingerprint falls short of, or differs from, the recorded one, each naming
    its table; ``[]`` when they are the same."""
    found: list[str] = []
    theirs = restored.get("tables", {})
    for table, want in recorded.get("tables", {}).items():
        got = theirs.get(table)
        if got is None:
            found.append(f"{table}: not in the restored copy")
            continue
        for flag, words in (("rls", "ROW LEVEL SECURITY"), ("force_rls", "FORCE ROW LEVEL SECURITY")):
            if want[flag] != got[flag]:
                found.append(f"{table}: {words} was {_on(want[flag])} in the source, is {_on(got[flag])} restored")
        for name, policy in want["policies"].items():
            if name not in got["policies"]:
                found.append(f"{table}: policy {name} ({policy['command']} TO {', '.join(policy['roles'])}) "
                             "is missing")
            elif got["policies"][name] != policy:
                changed = [f"{k} {policy[k]!r} became {got['policies'][name].get(k)!r}" for k in policy
                           if policy[k] != got["policies"][name].get(k)]
                found.append(f"{table}: policy {name} differs: {'; '.join(changed)}")
        found += [f"{table}: policy {name} was not in the source" for name in got["policies"]
                  if name not in want["policies"]]
        for role in sorted(set(want["grants"]) | set(got["grants"])):
            before, after = set(want["grants"].get(role, [])), set(got["grants"].get(role, []))
            if before - after:
                found.append(f"{table}: {role} lost {', '.join(sorted(before - after))}")
            if after - before:
                found.append(f"{table}: {role} gained {', '.join(sorted(after - before))}")
    return found


def _on(flag: bool) -> str:
    return "on" if flag else "off"
