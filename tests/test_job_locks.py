"""coldcopy.job_locks: the ops jobs' locks are rows only the ops role can lock, not advisory keys any login can hold.

Before, each of these jobs serialized on an advisory key computable from the repository: a login with no
privileges holding it stalled partition rotation, GDPR requests and erasures (a legal deadline), and migrations.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from coldcopy import job_locks
from coldcopy.gdpr import Gdpr
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.migrations import discover_migrations
from coldcopy.migrations.runner import MigrationRunner
from coldcopy.partitions import PartitionManager
from coldcopy.refresh.erasures import Dashboards
from tests.conftest import BACKUP_PASSPHRASE, KEYRING, SUBJECT_PEPPER

pytestmark = pytest.mark.integration

OLD_DETACH_KEY = "coldcopy: detach from public.email_events"  # hashtextextended(…, 0) was the advisory key
OLD_MIGRATION_KEY = 4_206_318_711_032_001


@pytest.fixture
def nobody(admin_dsn):
    """Connects to a database as a fresh login with no privileges (but USAGE on coldcopy_ops, to show the table
    itself is out of its reach); the login is dropped after the test."""
    login = f"nobody_{uuid.uuid4().hex[:8]}"
    opened: list[psycopg.Connection] = []
    granted: list[str] = []
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN")

    def connect(dsn: str) -> psycopg.Connection:
        with psycopg.connect(dsn, autocommit=True) as conn:
            job_locks.ensure(conn)
            conn.execute(f"GRANT USAGE ON SCHEMA coldcopy_ops TO {login}")
        granted.append(dsn)
        opened.append(psycopg.connect(make_conninfo(dsn, user=login), autocommit=True))
        return opened[-1]

    yield connect
    for conn in opened:
        conn.close()
    for dsn in granted:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"REVOKE USAGE ON SCHEMA coldcopy_ops FROM {login}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE {login}")


def cannot_take(squatter: psycopg.Connection, name: str) -> None:
    for attempt in (lambda: job_locks.xact_lock(squatter, name),
                    lambda: squatter.execute(f"SELECT 1 FROM {job_locks.TABLE} WHERE name = %s FOR UPDATE", (name,))):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), squatter.transaction():
            attempt()


def in_thread(work, timeout: float = 60.0) -> None:
    """Run ``work``; fail (leaving it behind, as a daemon) if it has not finished within ``timeout``."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - raised below
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still blocked after {timeout:.0f} s"
    if errors:
        raise errors[0]


def test_a_busy_lock_names_its_holder_and_goes_with_the_holders_process(migrated_db):
    connect = lambda: psycopg.connect(migrated_db)  # noqa: E731
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, psycopg; from coldcopy import job_locks\n"
        f"with job_locks.held(lambda: psycopg.connect({migrated_db!r}, application_name='the holder'), 'probe'):\n"
        "    print('held', flush=True); sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(job_locks.JobLockBusy, match=r"probe: held by pid \d+ \(user \w+, application 'the holder'"):
            with job_locks.held(connect, "probe"):
                pass
        with pytest.raises(RuntimeError, match="busy: held by pid"), job_locks.held(
                connect, "probe", wait_s=0.3, poll_s=0.1, busy=lambda who: RuntimeError(f"busy: held by {who}")):
            pass
    finally:
        holder.kill()  # no clean exit: the process dies, its connection with it
        holder.wait()
    with job_locks.held(connect, "probe", wait_s=10, poll_s=0.1):
        with psycopg.connect(migrated_db) as conn:
            # the holder keeps no snapshot: the job's own DETACH … FINALIZE or CREATE INDEX CONCURRENTLY waits for none
            assert conn.execute("SELECT backend_xmin FROM pg_stat_activity a JOIN pg_locks k ON k.pid = a.pid "
                                "AND k.locktype = 'transactionid' WHERE a.state = 'idle in transaction' "
                                "AND a.datname = current_database()").fetchall() == [(None,)]
            with pytest.raises(job_locks.JobLockBusy):
                job_locks.xact_lock(conn, "probe", nowait=True)
    with psycopg.connect(migrated_db) as conn:
        job_locks.xact_lock(conn, "probe", nowait=True)  # released on exit


def test_a_login_without_privileges_cannot_hold_up_a_detach(migrated_db, nobody):
    squatter = nobody(migrated_db)
    squatter.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (OLD_DETACH_KEY,))
    cannot_take(squatter, OLD_DETACH_KEY)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rotation = PartitionManager(conn, keyring=None, passphrase="unused")
        month = rotation.partitions()[0]
        in_thread(lambda: rotation.detach(month), timeout=30)
        assert month.name not in [p.name for p in rotation.partitions()]


@pytest.mark.parametrize("old_key", ["coldcopy gdpr request:{request}", "coldcopy erasure:{workspace}:{subject}",
                                     "coldcopy erasure ledger"])
def test_a_login_without_privileges_cannot_hold_up_an_erasure(generated_db, spaces, backup_key, nobody, old_key):
    """The request's claim, the subject's erasure and the ledger's entry: each was an advisory key (the ledger's
    waited for under lock_timeout, then failed after its retries)."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        gdpr = Gdpr(conn, dashboards=Dashboards, keyring=KEYRING,
                    lock_retry=LockRetryPolicy(attempts=2, lock_timeout_ms=300),
                    passphrase=BACKUP_PASSPHRASE, pepper=SUBJECT_PEPPER)
        workspace, email = conn.execute("SELECT workspace_id, email FROM leads ORDER BY id LIMIT 1").fetchone()
        request_id = str(conn.execute(
            "INSERT INTO data_subject_requests (workspace_id, email, request_type, status) "
            "VALUES (%s, %s, 'erasure', 'verified') RETURNING id", (workspace, email)).fetchone()[0])
        key = old_key.format(request=request_id, workspace=workspace,
                             subject=gdpr.subject_hash(str(workspace), email))
        squatter = nobody(generated_db)
        squatter.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
        cannot_take(squatter, key)
        in_thread(lambda: gdpr.handle(request_id, spaces), timeout=120)
        assert conn.execute("SELECT status FROM data_subject_requests WHERE id = %s", (request_id,)).fetchone()[0] \
            == "completed"
        assert conn.execute("SELECT count(*) FROM leads WHERE workspace_id = %s AND email = %s",
                            (workspace, email)).fetchone()[0] == 0


def test_a_login_without_privileges_cannot_hold_up_a_migration(migrated_db, nobody, tmp_path):
    """Before: the run waited advisory_lock_wait_s for the key, then refused to apply."""
    (tmp_path / "399_more.sql").write_text("CREATE TABLE public.more (id bigint PRIMARY KEY);\n")
    squatter = nobody(migrated_db)
    squatter.execute("SELECT pg_advisory_lock(%s)", (OLD_MIGRATION_KEY,))
    runner = MigrationRunner(lambda: psycopg.connect(migrated_db), advisory_lock_wait_s=2)
    cannot_take(squatter, "coldcopy migrations")
    assert runner.apply_all(discover_migrations(tmp_path), applied_by="test")
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT to_regclass('public.more') IS NOT NULL").fetchone()[0]
