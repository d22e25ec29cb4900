"""The verification server made ready by the job itself: the roles a restored copy of production needs.

A dump of the live database grants to roles (``GRANT SELECT … TO authenticated``, ``CREATE POLICY … TO anon``,
``ALTER DEFAULT PRIVILEGES FOR ROLE …``) that a fresh verification server lacks, and every restore there
failed with ``role "authenticated" does not exist`` until production's roles were copied by hand. Before each
restore onto the verification server (a backup's verification, a migrations rehearsal, a restore drill),
:func:`prepare` creates there the roles the live database's grants, policies and default privileges name that
are missing: **NOLOGIN, no password**, with the live server's memberships among them; once, said in one log
line. Only where the verification login may (superuser or CREATEROLE), and never on the live server. When it
may not, :class:`MissingRoles` names the roles and the one command that copies them.

The names are read from the live database's catalog (the dump comes from it), not from the archive, which
would mean reading the whole encrypted object once more.
"""

from __future__ import annotations

import logging
import shlex

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger(__name__)

# Every role an object of the current database names: grantees and grantors of its ACLs, default privileges'
# roles, policies' roles. Predefined roles (pg_*) exist on every server and cannot be created.
NAMED_ROLES = """
WITH acls(acl) AS (
    SELECT relacl FROM pg_class WHERE relacl IS NOT NULL
    UNION ALL SELECT attacl FROM pg_attribute WHERE attacl IS NOT NULL
    UNION ALL SELECT nspacl FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION ALL SELECT proacl FROM pg_proc WHERE proacl IS NOT NULL
    UNION ALL SELECT typacl FROM pg_type WHERE typacl IS NOT NULL
    UNION ALL SELECT lanacl FROM pg_language WHERE lanacl IS NOT NULL
    UNION ALL SELECT fdwacl FROM pg_foreign_data_wrapper WHERE fdwacl IS NOT NULL
    UNION ALL SELECT srvacl FROM pg_foreign_server WHERE srvacl IS NOT NULL
    UNION ALL SELECT lomacl FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
    UNION ALL SELECT defaclacl FROM pg_default_acl),
named(oid) AS (
    SELECT (aclexplode(acl)).grantee FROM acls
    UNION SELECT (aclexplode(acl)).grantor FROM acls
    UNION SELECT defaclrole FROM pg_default_acl
    UNION SELECT unnest(polroles) FROM pg_policy)
SELECT r.rolname FROM pg_roles r JOIN named ON named.oid = r.oid WHERE r.rolname !~ '^pg_' ORDER BY 1
"""

MEMBERSHIPS = """
SELECT m.rolname, g.rolname, a.admin_option FROM pg_auth_members a
JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid ORDER BY 1, 2
"""


class MissingRoles(RuntimeError):
    """The verification server lacks roles the restore needs, and its login may not create them."""


def globals_command(live_dsn: str, verify_dsn: str) -> str:
    """The one command that copies production's roles (no passwords) to the verification server."""
    live, verify = conninfo_to_dict(live_dsn), conninfo_to_dict(verify_dsn)

    def where(params: dict) -> str:
        return " ".join(f"-{flag} {shlex.quote(str(params[key]))}" for flag, key in
                        (("h", "host"), ("p", "port")) if params.get(key))

    user = shlex.quote(live.get("user") or "postgres")
    return (f"pg_dumpall --globals-only --no-role-passwords {where(live)} -U {user}"
            f" | psql {where(verify)} -U <a login with CREATEROLE> -d postgres")


def prepare(live_dsn: str, verify_admin_dsn: str) -> list[str]:
    """Create on the verification server the roles the live database names that it lacks (NOLOGIN, no
    password, the live memberships among them); returns their names. :class:`MissingRoles` when the
    verification login may not create roles."""
    with psycopg.connect(live_dsn, autocommit=True) as live, \
            psycopg.connect(verify_admin_dsn, autocommit=True) as verify:
        needed = [name for (name,) in live.execute(NAMED_ROLES)]
        existing = {name for (name,) in verify.execute("SELECT rolname FROM pg_roles")}
        missing = [name for name in needed if name not in existing]
        if not missing:
            return []
        from coldcopy.scratch import same_server

        if same_server(live, verify_admin_dsn):  # cannot happen (the live roles exist there): never create
            return []
        login, may = verify.execute("SELECT current_user::text, rolsuper OR rolcreaterole FROM pg_roles "
                                    "WHERE rolname = current_user").fetchone()
        if not may:
            raise MissingRoles(
                f"the verification server lacks the role(s) {', '.join(missing)} that the live database's "
                f"grants and policies name, and its login {login} may not create roles (no CREATEROLE): copy "
                f"production's roles once: {globals_command(live_dsn, verify_admin_dsn)} (or give {login} "
                f"CREATEROLE and the next run creates them, NOLOGIN and without passwords)")
        edges = live.execute(MEMBERSHIPS).fetchall()
        for name in missing:
            verify.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        granted, refused = [], []
        present = existing | set(missing)
        for member, group, admin in edges:
            if (member in missing or group in missing) and member in present and group in present:
                grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member))
                try:
                    verify.execute(grant + sql.SQL(" WITH ADMIN OPTION") if admin else grant)
                    granted.append(f"{member} in {group}")
                except psycopg.errors.InsufficientPrivilege:
                    refused.append(f"{member} in {group}")
    log.info("verification server: created the role(s) %s the live database's grants name (NOLOGIN, no password)"
             "%s%s", ", ".join(missing), f"; memberships as on the live server: {', '.join(granted)}" if granted
             else "", f"; memberships {login} may not grant: {', '.join(refused)}" if refused else "")
    return missing
