"""Every job where the users are (issue 32): on a cluster shaped like a hosted Supabase project, as its login
``postgres``, which is no superuser there. Each failure below was reproduced on that cluster before its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from coldcopy.backups import toc
from coldcopy.migrations import Migration, MigrationError
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.refresh.erasures import Dashboards
from coldcopy.testing import local_env
from tests.conftest import ROOT, SUBJECT_PEPPER

pytestmark = pytest.mark.supabase


@pytest.fixture(scope="module")
def demo(supabase, tmp_path_factory):
    """`make demo`'s run of every DAG (migrations, refreshes, partitions, backups with their verification,
    maintenance, health, GDPR, restores whole and as of a second, partition restore, the change archive) with
    ``coldcopy_db`` the project's ``postgres`` login on the database ``postgres``."""
    env = {**os.environ, "AIRFLOW_CONN_COLDCOPY_DB": local_env.airflow_connection(supabase.dsn),
           "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-supabase"))}
    for name in ("AIRFLOW_CONN_COLDCOPY_SPACES", "AIRFLOW_CONN_COLDCOPY_BACKUP_KEY"):
        env.pop(name, None)
    # the tests' subject pepper, so that the tests after it may erase in the project the demo's GDPR run keyed
    env["AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER"] = json.dumps({"conn_type": "generic", "password": SUBJECT_PEPPER})
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    return done


def test_every_dag_of_the_demo_runs_as_the_non_superuser_postgres(supabase, demo):
    """Before: migration 203 failed (REVOKE on the platform's pgbouncer.get_auth), so 204 and 301–304 never
    applied; then no whole-database restore worked (pg_restore stopped at entries only a superuser replays),
    table backups failed verification, and the weekly maintenance failed on auth's indexes."""
    assert demo.returncode == 0, (demo.stdout[-4000:], demo.stderr[-4000:])
    assert "Demo finished." in demo.stdout
    for line in ("coldcopy_migrations [apply]: success", "backup_to_spaces [backup, verify by restoring, "
                 "retention]: success", "db_maintenance_weekly [invalid indexes, reindex, VACUUM FULL, analyze]: "
                 "success", "restore_from_spaces [latest backup into a new database, erasures re-applied]: success"):
        assert line in demo.stdout, demo.stdout[-4000:]
    with psycopg.connect(supabase.admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 3  # the platform's, untouched
        assert conn.execute("SELECT array_agg(DISTINCT verification) FROM coldcopy_ops.backup_log"
                            ).fetchone()[0] == ["verified"]
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.schema_migrations").fetchone()[0] == 26
        assert conn.execute("SELECT pg_get_userbyid(proowner) FROM pg_proc "
                            "WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure").fetchone()[0] == "supabase_admin"


def test_a_dump_of_the_project_lists_what_postgres_cannot_restore_and_tables_match_schema_and_name(supabase, demo,
                                                                                                 tmp_path):
    dump = tmp_path / "project.dump"
    subprocess.run([local_env.executable("pg_dump"), "-Fc", "-f", str(dump), "-d", supabase.dsn], check=True)
    listing = subprocess.run([local_env.executable("pg_restore"), "-l", "-v", str(dump)], check=True,
                             capture_output=True, text=True).stdout
    with psycopg.connect(supabase.dsn) as conn:
        can = toc.Capabilities.of(conn)
    assert not can.superuser
    _, left_out = toc.restorable(listing, can)
    text = "\n".join(left_out)
    for entry in ("EXTENSION - pg_stat_statements", "COMMENT - EXTENSION", "EVENT TRIGGER - issue_pg_cron_access",
                  "ACL pg_catalog FUNCTION pg_reload_conf()", "DEFAULT ACL auth DEFAULT PRIVILEGES FOR TABLES "
                  "supabase_auth_admin"):
        assert entry in text, text
    assert "EXTENSION - pgcrypto" not in text  # trusted: postgres creates it
    chosen, _ = toc.restorable(listing, can, tables=["public.users"])
    assert [line.split(" ", 3)[3] for line in chosen.splitlines()] == ["TABLE DATA public users postgres"]
    with pytest.raises(LookupError, match="no data of public.nowhere"):
        toc.restorable(listing, can, tables=["public.nowhere"])


def test_maintenance_leaves_the_platforms_tables_to_the_platform(supabase, demo):
    from coldcopy.maintenance import Maintenance, MaintenanceThresholds

    with psycopg.connect(supabase.dsn, autocommit=True) as conn:
        runner = Maintenance(conn, thresholds=MaintenanceThresholds(
            reindex_bloat=0, reindex_min_bytes=0, reindex_max_per_run=1000, reindex_cooldown_days=0))
        planned = [t.name for t in runner.reindex_plan()]
        assert planned and not [i for i in planned if i.split(".")[0] in ("auth", "storage", "realtime")], planned
        picked, skipped = runner.vacuum_plan(everything=True)
        assert "auth.refresh_tokens" in {t.name for t in skipped} and \
            not [t for t in picked if t.name.startswith("auth.")]
        for target in runner.reindex_plan()[:3]:
            assert runner.run(target).outcome == "done"


def test_a_failing_migration_names_its_line(supabase, tmp_path):
    with psycopg.connect(supabase.admin_dsn, autocommit=True) as admin:
        admin.execute("CREATE DATABASE lines OWNER postgres")
    dsn = local_env.database_dsn(supabase.dsn, "lines")
    path = tmp_path / "900_revoke.sql"
    path.write_text("CREATE TABLE public.fine (id int);\n\n-- on Supabase the platform's:\n"
                    "REVOKE ALL ON FUNCTION pg_catalog.pg_reload_conf() FROM postgres;\n")
    with pytest.raises(MigrationError, match=r"900_revoke.sql failed at line 4 and was rolled back"):
        MigrationRunner(lambda: psycopg.connect(dsn)).apply(Migration(900, "revoke", path), applied_by="pytest")


def test_a_migration_is_rehearsed_as_postgres_on_a_supabase_shaped_verify_server(supabase, demo, spaces,
                                                                                 backup_key, tmp_path):
    """The rehearsal restores the newest backup on ``coldcopy_verify_db``: on Supabase a project of the same
    shape, its login postgres too. Before, that restore stopped at the first entry only a superuser replays,
    so every migration on a populated database failed at ``rehearse``."""
    from coldcopy.backups import BackupRunner
    from coldcopy.migrations.rehearsal import rehearse
    from coldcopy.migrations.scratch_copy import ScratchCopy
    from coldcopy.testing import servers
    from tests.conftest import BACKUP_PASSPHRASE, KEYRING

    verify = servers.SupabaseShapedCluster().start()
    try:
        runner = BackupRunner(supabase.dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
        runner.backup()
        path = tmp_path / "390_lead_note.sql"
        path.write_text("ALTER TABLE public.leads ADD COLUMN support_note text;\n"
                        "SELECT pg_sleep(0.5);  -- the lock held long enough to be seen\n")
        with ScratchCopy(runner, verify.dsn) as scratch:
            with psycopg.connect(scratch) as conn:
                leads = conn.execute("SELECT count(*) FROM public.leads").fetchone()[0]
            [result] = rehearse(scratch, [Migration(390, "lead_note", path)], hot={"public.leads"})
        assert leads > 0 and result.error is None and result.strongest == "AccessExclusiveLock", result
        assert any("pg_stat_statements" in entry for entry in runner.left_out), runner.left_out
    finally:
        verify.stop()


def test_a_support_copy_made_and_erased_as_postgres(supabase, demo, spaces, backup_key, coldcopy_conn):
    """The support copy (issue 31, 8) where the users are: ``restore_from_spaces`` with ``target_schema`` makes
    it in the live database as postgres, an erasure reaches it, ``gdpr_retention``'s sweep drops it."""
    import uuid

    from coldcopy import support_copies
    from coldcopy.backups import BackupRunner
    from coldcopy.gdpr import Gdpr
    from coldcopy.operators.restore import RestoreFromSpacesOperator
    from tests.conftest import BACKUP_PASSPHRASE, KEYRING, FakeTaskInstance

    BackupRunner(supabase.dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING).backup()
    with psycopg.connect(supabase.dsn) as conn:
        workspace, email = conn.execute("SELECT workspace_id::text, email FROM public.leads l WHERE EXISTS "
                                        "(SELECT 1 FROM public.email_events e WHERE e.lead_id = l.id) "
                                        "ORDER BY id LIMIT 1").fetchone()
    coldcopy_conn(supabase.dsn)
    ti = FakeTaskInstance(dag_id="restore_from_spaces", run_id="r", task_id="restore")
    done = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database="", workspace_id=workspace,
                                     target_schema="support_ws").execute({"ti": ti})
    assert done["target_schema"] == "support_ws" and done["rows"] > 0
    with psycopg.connect(supabase.dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM support_ws.leads WHERE email = %s", (email,)).fetchone()[0] == 1
        gdpr = Gdpr(conn, dashboards=Dashboards, pepper=SUBJECT_PEPPER)
        counts = gdpr.erase(gdpr.find(workspace, email=email), str(uuid.uuid4()))
        assert counts["support_ws.leads"] == 1 and counts.get("support_ws.email_events", 0) > 0, counts
        assert conn.execute("SELECT count(*) FROM support_ws.leads WHERE email = %s", (email,)).fetchone()[0] == 0
        conn.execute("UPDATE coldcopy_ops.support_copies SET created_at = now() - interval '15 days', "
                     "expires_at = now() - interval '1 day'")
        assert support_copies.sweep(conn) == ["support_ws"]
        assert conn.execute("SELECT to_regnamespace('support_ws')").fetchone()[0] is None


def test_after_the_demos_whole_life_the_schema_is_what_the_files_build(supabase, demo, verify_cluster):
    """Issue 44: rotation (months made, archived, detached, dropped, one restored), whole and as-of restores, GDPR
    erasure and retention, the incremental summaries' capture installed, maintenance — none of it is drift."""
    from coldcopy.migrations import discover_migrations
    from coldcopy.migrations.drift import find

    assert demo.returncode == 0, demo.stdout[-2000:]
    report = find(supabase.dsn, verify_cluster, discover_migrations())
    assert report.differences == [], report.summary()
