"""The change archive where the users are: Supabase's ``postgres`` is no superuser but owns the tables and has
``REPLICATION`` (and ``BYPASSRLS``); row-level security is in force on the tenant tables. Setup, drains, the
base backup and the replay all run as such a role."""

from __future__ import annotations

import psycopg
from psycopg.conninfo import make_conninfo

from coldcopy.backups import BackupRunner
from coldcopy.migrations.marker_applier import marker_applier
from coldcopy.pitr import recovery
from coldcopy.pitr.archiver import ChangeArchiver
from coldcopy.pitr.replay import Replayer
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.pitr import restored_base

ROLE = "supabase_like"


def own_everything(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            conn.execute(f"CREATE ROLE {ROLE} LOGIN REPLICATION BYPASSRLS CREATEDB NOSUPERUSER")
        conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {ROLE}")
        for schema in ("public", "app", "analytics", "auth", "coldcopy_ops"):
            conn.execute(f"ALTER SCHEMA {schema} OWNER TO {ROLE}")
        for (table,) in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname IN ('public', 'app', 'analytics', 'auth', 'coldcopy_ops') "
                "AND c.relkind IN ('r', 'p', 'm', 'v')").fetchall():  # owned sequences follow
            conn.execute(f"ALTER TABLE {table} OWNER TO {ROLE}")
        for (function,) in conn.execute(
                "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname IN ('public', 'app', 'auth')").fetchall():
            conn.execute(f"ALTER FUNCTION {function} OWNER TO {ROLE}")


def test_setup_drain_backup_and_replay_as_a_replication_role_that_is_not_superuser(pitr_db, spaces, logical):
    own_everything(pitr_db)
    as_role = make_conninfo(pitr_db, user=ROLE)
    with psycopg.connect(as_role) as conn:
        assert conn.execute("SELECT NOT rolsuper AND rolreplication FROM pg_roles WHERE rolname = current_user"
                            ).fetchone()[0]
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'public.leads'::regclass"
                            ).fetchone()[0]  # RLS in force on the source
    archiver = ChangeArchiver(as_role, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    archiver.drain_once()  # the publication (as the tables' owner) and the slot (REPLICATION)
    runner = BackupRunner(as_role, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    runner.backup()
    with psycopg.connect(as_role, autocommit=True) as conn:
        conn.execute("UPDATE public.leads SET first_name = 'Role' WHERE id IN "
                     "(SELECT id FROM public.leads ORDER BY id LIMIT 20)")
        conn.execute("DELETE FROM public.suppression_list WHERE id IN "
                     "(SELECT id FROM public.suppression_list ORDER BY id LIMIT 5)")
        expected = conn.execute("SELECT count(*), count(*) FILTER (WHERE first_name = 'Role') FROM public.leads "
                                ).fetchone(), conn.execute("SELECT count(*) FROM public.suppression_list").fetchone()
    plan, target = restored_base(archiver, runner, pitr_db, logical.dsn, "role")
    own_everything(target)
    target_as_role = make_conninfo(target, user=ROLE)
    with psycopg.connect(target_as_role) as conn:
        assert not Replayer(conn).replica_role  # session_replication_role needs a superuser: triggers per table
    recovery.replay(runner, plan, target_as_role, migrate=marker_applier(target_as_role))
    with psycopg.connect(target_as_role) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE first_name = 'Role') FROM public.leads"
                            ).fetchone() == expected[0]
        assert conn.execute("SELECT count(*) FROM public.suppression_list").fetchone() == expected[1]
        disabled = conn.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                                "AND NOT t.tgisinternal AND t.tgenabled = 'D'").fetchone()[0]
        assert disabled == 0  # every trigger the replay quieted is enabled again
