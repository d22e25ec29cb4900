"""Faults under real processes: PgBouncer restarted under application load, and the database itself restarted
(``pg_ctl restart -m fast`` on a throwaway cluster) in the middle of a refresh, an archive and a backup — each
fails cleanly, leaves nothing half-done, and its retry succeeds."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun
from coldcopy.refresh_schedule import REFRESH_JOBS
from coldcopy.testing import app_load, generate_data, local_env, servers
from tests.conftest import BACKUP_PASSPHRASE, KEYRING

PATIENT = LockRetryPolicy(attempts=20, lock_timeout_ms=1000, max_lock_timeout_ms=1000, backoff_s=0.2, max_backoff_s=0.2)


@pytest.fixture(scope="module")
def cluster():
    """A throwaway cluster with a migrated, generated (scale 1) database ``coldcopy``."""
    cluster = servers.ThrowawayCluster().start()
    dsn = local_env.create_database(cluster.dsn, "coldcopy")
    MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="pytest")
    generate_data.generate(dsn, scale=1)
    with psycopg.connect(dsn, autocommit=True) as conn:  # populated, as in production
        for job in REFRESH_JOBS.values():
            for view in job.views:
                refresher_for(conn, view).run(RefreshRun(run_id="populate"))
    cluster.coldcopy_dsn = dsn
    yield cluster
    cluster.stop()


def restart_in(cluster, seconds: float) -> threading.Thread:
    """Restart the server (fast: every session is terminated) ``seconds`` from now."""
    thread = threading.Thread(target=lambda: (time.sleep(seconds), cluster.restart("fast")))
    thread.start()
    return thread


def blocker(dsn: str, statement: str) -> psycopg.Connection:
    conn = psycopg.connect(dsn)
    conn.execute(statement)
    return conn  # its transaction stays open until the restart ends it


def run_failing(work) -> BaseException | None:
    """The error ``work`` failed with, or None if it survived (the caller asserts, after joining the restart)."""
    try:
        work()
    except Exception as error:  # noqa: BLE001 - the point is which error
        return error
    return None


def test_pgbouncer_restart_under_load_the_application_recovers_and_jobs_are_unaffected(admin_dsn, generated_db):
    bouncer = servers.LocalPgBouncer(admin_dsn).start()
    dbname = psycopg.conninfo.conninfo_to_dict(generated_db)["dbname"]
    try:
        password = app_load.prepare(generated_db)
        before = app_load.run(bouncer, dbname, password, clients=10, seconds=3)
        during = {}
        loader = threading.Thread(target=lambda: during.update(r=app_load.run(bouncer, dbname, password, clients=10,
                                                                             seconds=4)))
        loader.start()
        time.sleep(1.5)
        bouncer.restart()
        with psycopg.connect(generated_db, autocommit=True) as conn:  # jobs connect directly
            outcome = refresher_for(conn, "analytics.campaign_analytics", force=True).run(
                RefreshRun("fault"))
        loader.join()
        after = app_load.run(bouncer, dbname, password, clients=10, seconds=3)
    finally:
        bouncer.stop()
    assert before.errors == 0 and after.errors == 0 and after.transactions > 100  # recovered
    assert during["r"].errors > 0  # the restart was felt by clients connected at the time
    assert outcome.action == "refreshed"


def test_a_refresh_interrupted_by_a_database_restart_fails_cleanly_and_its_retry_succeeds(cluster):
    dsn = cluster.coldcopy_dsn
    hold = blocker(dsn, "LOCK TABLE public.campaigns IN ACCESS EXCLUSIVE MODE")  # the refresh waits here
    restart = restart_in(cluster, 2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        refresher = refresher_for(conn, "analytics.campaign_analytics", lock_retry=PATIENT, force=True)
        error = run_failing(lambda: refresher.run(RefreshRun("fault")))
    restart.join()
    hold.close()
    assert isinstance(error, psycopg.OperationalError)
    with psycopg.connect(dsn, autocommit=True) as conn:
        outcome = refresher_for(conn, "analytics.campaign_analytics", force=True).run(RefreshRun("retry"))
        assert outcome.action == "refreshed" and outcome.mode == "rebuild"
        assert conn.execute("SELECT count(*) FROM analytics.campaign_analytics").fetchone()[0] > 0


def test_an_archive_interrupted_by_a_database_restart_loses_nothing_and_its_retry_detaches(cluster, spaces):
    from coldcopy.partitions import PartitionManager

    key = KEYRING
    dsn = cluster.coldcopy_dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        manager = PartitionManager(conn, keyring=key, passphrase=BACKUP_PASSPHRASE)
        month = manager.archive_candidates()[0]
        rows = conn.execute(f"SELECT count(*) FROM public.{month.name}").fetchone()[0]
        manager.archive(month, spaces, detach=False)  # exported and verified, as the mapped task does
    snapshot = blocker(dsn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    snapshot.execute("SELECT count(*) FROM public.email_events")  # a reader DETACH CONCURRENTLY must wait for
    restart = restart_in(cluster, 2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        manager = PartitionManager(conn, keyring=key, passphrase=BACKUP_PASSPHRASE, lock_retry=PATIENT)
        error = run_failing(manager.detach_verified)
    restart.join()
    snapshot.close()
    assert isinstance(error, psycopg.OperationalError)
    with psycopg.connect(dsn, autocommit=True) as conn:
        state = conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                             (month.name,)).fetchone()[0]
        assert state == "verified"  # archived, and the month still has every row until the detach completes
        assert conn.execute(f"SELECT count(*) FROM public.{month.name}").fetchone()[0] == rows
        retry = PartitionManager(conn, keyring=key, passphrase=BACKUP_PASSPHRASE)
        assert retry.detach_verified() == [month.name]  # the retry
        assert month.name not in {p.name for p in retry.partitions()}
        assert conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                            (month.name,)).fetchone()[0] == "detached"


def test_a_backup_interrupted_by_a_database_restart_leaves_no_object_and_its_retry_succeeds(cluster, spaces):
    from coldcopy.backups import BackupRunner

    client, bucket = spaces.client, spaces.name
    dsn = cluster.coldcopy_dsn
    hold = blocker(dsn, "LOCK TABLE public.leads IN ACCESS EXCLUSIVE MODE")  # the backup waits here
    restart = restart_in(cluster, 2)
    runner = BackupRunner(dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING)
    error = run_failing(runner.backup)
    restart.join()
    hold.close()
    assert isinstance(error, Exception), "the backup survived the restart"
    assert client.list_objects_v2(Bucket=bucket, Prefix="backups/").get("KeyCount", 0) == 0
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    with psycopg.connect(cluster.dsn) as conn:  # no scratch database left behind
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE '%scratch%' "
                            "OR datname LIKE 'coldcopy\\_verify%'").fetchone()[0] == 0
    result = BackupRunner(dsn, spaces, BACKUP_PASSPHRASE, keyring=KEYRING).backup()
    assert client.head_object(Bucket=bucket, Key=result.object_key)["ContentLength"] == result.manifest["byte_size"]
