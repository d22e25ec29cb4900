"""The verification server made ready by the job itself (issue 41 item 5): a fresh server lacking production's
roles failed every verification with ``role "authenticated" does not exist`` until they were copied by hand.

Before the fix: the first test failed in pg_restore (``role "authenticated" does not exist``), the second with
that message and no word of what to do, the third had no :mod:`coldcopy.verify_roles` to call."""

from __future__ import annotations

import psycopg
import pytest

from coldcopy.backups import BackupError, BackupRunner
from coldcopy.testing import servers
from tests.conftest import KEYRING

API_ROLES = ("anon", "authenticated", "service_role")


@pytest.fixture(scope="module")
def verify_server():
    """A throwaway cluster as the verification server: initdb's roles only, no ``authenticated``."""
    cluster = servers.ThrowawayCluster().start()
    yield cluster
    cluster.stop()


def fresh(cluster) -> None:
    """The verification server as initdb left it, plus a login ``plain`` that may create databases only."""
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND rolname <> "
                                    "'postgres'").fetchall():
            conn.execute(f'DROP ROLE "{name}"')
        conn.execute("CREATE ROLE plain LOGIN CREATEDB")


def roles(dsn: str) -> dict[str, bool]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_'").fetchall())


def test_verification_creates_the_missing_roles_nologin(migrated_db, spaces, backup_key, verify_server):
    from coldcopy.migrations.scratch_copy import ScratchCopy

    fresh(verify_server)
    runner = BackupRunner(migrated_db, spaces, backup_key, keyring=KEYRING)
    key = runner.backup().object_key
    assert "authenticated" not in roles(verify_server.dsn)
    assert runner.verify(key, verify_server.dsn)["tables"] > 30
    created = roles(verify_server.dsn)
    assert all(created[role] is False for role in API_ROLES)  # NOLOGIN
    with psycopg.connect(verify_server.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_authid WHERE rolname = ANY(%s) AND rolpassword IS NOT NULL",
                            (list(API_ROLES),)).fetchone()[0] == 0
    fresh(verify_server)  # the migrations rehearsal's scratch copy, on a fresh server, too
    with ScratchCopy(runner, verify_server.dsn) as scratch, psycopg.connect(scratch) as conn:
        assert conn.execute("SELECT count(*) FROM public.workspaces").fetchone()[0] == 0
    assert "authenticated" in roles(verify_server.dsn)


def test_a_login_without_createrole_is_told_the_roles_and_the_command(migrated_db, spaces, backup_key,
                                                                     verify_server):
    fresh(verify_server)
    runner = BackupRunner(migrated_db, spaces, backup_key, keyring=KEYRING)
    key = runner.backup().object_key
    plain = verify_server.dsn.replace("postgres@", "plain@", 1)
    with pytest.raises(BackupError) as failed:
        runner.verify(key, plain)
    message = str(failed.value)
    assert "anon, authenticated" in message and "service_role" in message and "plain" in message
    live = psycopg.conninfo.conninfo_to_dict(migrated_db)
    assert f"pg_dumpall --globals-only --no-role-passwords -h {live['host']} -p {live['port']}" in message
    assert f"| psql -h 127.0.0.1 -p {verify_server.port}" in message
    assert "authenticated" not in roles(verify_server.dsn)  # nothing created, nothing half-restored
    with psycopg.connect(migrated_db) as conn:  # recorded as the verification's failure, the command in it
        error = conn.execute("SELECT verification_error FROM coldcopy_ops.backup_log WHERE object_key = %s",
                             (key,)).fetchone()[0]
    assert "pg_dumpall --globals-only" in error


def test_memberships_as_on_the_live_server_for_a_createrole_login(verify_server):
    """The live server's memberships among the roles created; a CREATEROLE login (no superuser) may; never on
    the live server itself."""
    from coldcopy import verify_roles

    live = servers.ThrowawayCluster().start()
    try:
        with psycopg.connect(live.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE readers NOLOGIN; CREATE ROLE analyst LOGIN PASSWORD 'secret' IN ROLE readers;"
                         "CREATE TABLE t (id int); GRANT SELECT ON t TO analyst; ALTER TABLE t ENABLE ROW LEVEL "
                         "SECURITY; CREATE POLICY p ON t TO readers USING (true)")
        fresh(verify_server)
        with psycopg.connect(verify_server.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE keeper LOGIN CREATEROLE")
        keeper = verify_server.dsn.replace("postgres@", "keeper@", 1)
        assert verify_roles.prepare(live.dsn, keeper) == ["analyst", "readers"]
        assert verify_roles.prepare(live.dsn, keeper) == []  # once
        assert {"analyst": False, "readers": False}.items() <= roles(verify_server.dsn).items()
        with psycopg.connect(verify_server.dsn) as conn:
            assert conn.execute("SELECT pg_has_role('analyst', 'readers', 'MEMBER'), rolpassword IS NULL "
                                "FROM pg_authid WHERE rolname = 'analyst'").fetchone() == (True, True)
        assert verify_roles.prepare(live.dsn, live.dsn) == []  # the live server: nothing missing, nothing made
    finally:
        live.stop()
