"""``same_server`` (issue 40, 11): whether the verify server is the live one, the guard of every drill and rehearsal.
It took an advisory lock on ``live`` and looked for it from the other side by ``pg_backend_pid()``: through a
transaction-pooling PgBouncer the lock, the pid and the unlock each go to whichever server connection is free, so
it missed the live server and left the lock held. Now one statement per side, no session state: the cluster's
``system_identifier``, its postmaster's start time and port. A real PgBouncer (include/pgbouncer.ini), the shared
server, and two throwaway servers (one a copy of the other's cluster: same system identifier, another server)."""

from __future__ import annotations

import os
import shutil
import subprocess

import psycopg
import pytest

from coldcopy.scratch import same_server
from coldcopy.testing import app_load, servers


@pytest.fixture(scope="module")
def pgbouncer(admin_dsn):
    bouncer = servers.LocalPgBouncer(admin_dsn).start()
    yield bouncer
    bouncer.stop()


class Busy:
    """The live connection while the pool has other clients: one holds a server connection until ``live``'s first
    statement has run, then releases it; PgBouncer hands out the connection released last, so ``live``'s next
    statement reaches another server connection (another backend), as under the application's traffic."""

    def __init__(self, live: psycopg.Connection, other_client: psycopg.Connection) -> None:
        self.live, self.other_client = live, other_client

    def execute(self, *args, **kwargs):
        result = self.live.execute(*args, **kwargs)
        if self.other_client is not None:
            self.other_client.commit()
            self.other_client = None
        return result

    def __getattr__(self, name):
        return getattr(self.live, name)


def advisory_locks(admin_dsn: str, database: str) -> int:
    with psycopg.connect(admin_dsn) as admin:
        return admin.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE "
                             "l.locktype = 'advisory' AND a.datname = %s", (database,)).fetchone()[0]


def test_the_live_server_is_found_through_transaction_pooling_and_no_lock_is_left(pgbouncer, migrated_db, admin_dsn):
    database = psycopg.conninfo.conninfo_to_dict(migrated_db)["dbname"]
    through_pool = pgbouncer.dsn(database, app_load.APP_ROLE, app_load.prepare(migrated_db))  # no superuser
    for _ in range(3):
        with psycopg.connect(through_pool, autocommit=True) as live, psycopg.connect(through_pool) as other_client:
            other_client.execute("SELECT 1")  # holds a server connection, in a transaction
            assert same_server(Busy(live, other_client), admin_dsn)  # the same server, reached directly
            assert same_server(live, through_pool) and same_server(live, migrated_db)
        assert advisory_locks(admin_dsn, database) == 0
    with psycopg.connect(through_pool) as live:  # not autocommit: left as it was found, idle
        assert same_server(live, admin_dsn)
        assert live.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_another_server_even_a_copy_of_the_same_cluster_is_another(admin_dsn):
    first = servers.ThrowawayCluster().start()
    copy = servers.ThrowawayCluster()
    try:
        with psycopg.connect(admin_dsn) as live:
            assert not same_server(live, first.dsn)
        first._run(str(first.bindir / "pg_ctl"), "-D", str(first.directory), "-m", "fast", "-w", "stop")
        shutil.copytree(first.directory, copy.directory, symlinks=True)  # stopped cleanly: a consistent copy
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "postgres:postgres", str(copy.home)], check=True)
        first.start()
        copy.start()
        with psycopg.connect(first.dsn) as one, psycopg.connect(copy.dsn) as two:
            identifier = "SELECT system_identifier FROM pg_control_system()"
            assert one.execute(identifier).fetchone() == two.execute(identifier).fetchone()  # a clone
            assert not same_server(one, copy.dsn) and not same_server(two, first.dsn)
            assert same_server(one, first.dsn) and same_server(two, copy.dsn)
    finally:
        copy.stop()
        first.stop()
