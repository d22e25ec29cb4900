"""The schema the applied migration files build (:func:`build`): the files ``coldcopy_ops.schema_migrations``
records as applied, in version order, applied to an empty scratch database on the verify server — never on the
live server — and read back from its catalog. Dropped whatever happens (and swept, labelled, when killed).

Made to match what the live database's own history makes:

* the roles the live database names exist there (:func:`coldcopy.verify_roles.prepare`, NOLOGIN);
* the **default privileges** under which live's objects were created are set for the role that applies the files
  here (Supabase grants ALL on every new object of ``public`` to ``anon``, ``authenticated`` and
  ``service_role`` by a default ACL of ``postgres``; without it every table would look like drift);
* an applied file whose text on disk is not what was applied (its checksum) is refused: the expected schema would
  not be the one live was built by.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from coldcopy.migrations import Migration, MigrationError
from coldcopy.migrations.drift import catalog

log = logging.getLogger(__name__)

_DEFAULTS = """
SELECT CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                            WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END,
       n.nspname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
       string_agg(a.privilege_type, ', ' ORDER BY a.privilege_type), bool_or(a.is_grantable)
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(d.defaclacl) a
WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""


@dataclass
class Expected:
    objects: dict
    files: list[str]
    seconds: float


def applied_files(live: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """The files live's history (ours and the Supabase CLI's) records as applied, in order; :class:`MigrationError`
    when one recorded is not on disk, or its text changed (a reissued file counts as its earlier text)."""
    from coldcopy.migrations import status, supabase_history
    from coldcopy.migrations.status import Status

    history, cli = status.history(live), supabase_history.recorded(live)
    missing = sorted(set(history) - {m.version for m in migrations})
    if missing:
        raise MigrationError(f"applied migration(s) {missing} are not on disk: the expected schema cannot be built")
    states = {m.file_name: status.status_of(m, history, cli) for m in migrations}
    changed = [name for name, state in states.items() if state is Status.CHANGED]
    if changed:
        raise MigrationError(f"applied migration file(s) changed on disk: {', '.join(changed)}")
    return [m for m in migrations if states[m.file_name] is Status.APPLIED]


def _copy_default_privileges(live: psycopg.Connection, scratch: psycopg.Connection) -> int:
    rows = live.execute(_DEFAULTS).fetchall()
    for objects, schema, grantee, privileges, grantable in rows:
        if schema is not None and not scratch.execute("SELECT to_regnamespace(%s) IS NOT NULL",
                                                      (schema,)).fetchone()[0]:
            continue  # a schema the files create: its defaults were set by a file, which does it again here
        scratch.execute(sql.SQL("ALTER DEFAULT PRIVILEGES {} GRANT {} ON {} TO {}{}").format(
            sql.SQL("IN SCHEMA {}").format(sql.Identifier(schema)) if schema else sql.SQL(""),
            sql.SQL(privileges), sql.SQL(objects),
            sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee),
            sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    return len(rows)


def build(live_dsn: str, verify_admin_dsn: str, migrations: list[Migration], *,
          ttl: timedelta = timedelta(hours=1)) -> Expected:
    """The objects the applied files build, read from a scratch database on ``verify_admin_dsn``'s server."""
    import time

    from coldcopy import scratch, verify_roles
    from coldcopy.migrations.runner import MigrationRunner

    began = time.monotonic()
    with psycopg.connect(live_dsn, autocommit=True) as live:
        files = applied_files(live, migrations)
        if scratch.same_server(live, verify_admin_dsn):
            raise MigrationError("the verify server is the live database's own server: the expected schema is "
                                 "built only on a server of its own")
    verify_roles.prepare(live_dsn, verify_admin_dsn)
    name = f"coldcopy_drift_{datetime.now(UTC):%Y%m%d%H%M%S}_{os.getpid()}"
    with psycopg.connect(verify_admin_dsn, autocommit=True) as admin:
        scratch.sweep(admin)
        scratch.create(admin, name, "drift", ttl)
    dsn = psycopg.conninfo.make_conninfo(verify_admin_dsn, dbname=name)
    try:
        with psycopg.connect(live_dsn, autocommit=True) as live, psycopg.connect(dsn, autocommit=True) as target:
            _copy_default_privileges(live, target)
        runner = MigrationRunner(lambda: psycopg.connect(dsn))
        for migration in files:
            runner.apply(migration, applied_by="drift check")
        with psycopg.connect(dsn, autocommit=True) as target:
            objects = catalog.read(target)
    finally:
        with psycopg.connect(verify_admin_dsn, autocommit=True) as admin:
            scratch.drop(admin, name)
    log.info("expected schema: %d applied file(s), %d objects, built in %.1f s", len(files), len(objects),
             time.monotonic() - began)
    return Expected(objects, [m.file_name for m in files], round(time.monotonic() - began, 2))
