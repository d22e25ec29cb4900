"""`make airflow` is a complete stack (issue 41 item 3): a verify server (``coldcopy_verify_db``) with the target's
roles, ``wal_level=logical`` on the embedded target, a second user to approve with. Before: no
``coldcopy_verify_db`` (no rehearsals, drills failed at once), ``wal_level=replica``, ``admin`` alone.

The launcher's own functions, on embedded servers of this test's own (``.pgdata/test-launcher-<hex>*``, deleted
after): the live stack itself is the e2e tests' (tests/e2e/test_live_cli.py runs the CLI it writes)."""

from __future__ import annotations

import importlib.util
import uuid

import psycopg
import pytest

from coldcopy.pg_tools import import_pgserver
from coldcopy.testing import local_env

ROOT = local_env.ROOT


@pytest.fixture
def launcher(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("airflow_local", ROOT / "scripts" / "airflow_local.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HOME", tmp_path)  # its generated secrets, not the developer's .airflow
    for name in ("AIRFLOW_CONN_COLDCOPY_DB", "AIRFLOW_CONN_COLDCOPY_VERIFY_DB"):
        monkeypatch.delenv(name, raising=False)
    return module


def test_embedded_target_is_logical_and_a_verify_server_of_its_own_has_its_roles(launcher, monkeypatch):
    from coldcopy.scratch import same_server

    name = f"test-launcher-{uuid.uuid4().hex[:8]}"
    try:
        server, verify_db = launcher.embedded_servers(name)
        with psycopg.connect(server, autocommit=True) as target:
            assert target.execute("SHOW wal_level").fetchone()[0] == "logical"
            verify = local_env.dsn_from_airflow_connection(verify_db)
            assert not same_server(target, verify)  # a server of its own: drills and rehearsals may run there
        with psycopg.connect(verify) as conn:
            assert dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)",
                                     (list(local_env.API_ROLES[:3]),)).fetchall()) == dict.fromkeys(
                local_env.API_ROLES[:3], False)
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DB", local_env.airflow_connection(server))  # a target of yours
        assert launcher.embedded_servers(name)[1] is None  # no embedded verify server beside it
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", verify_db)  # yours, kept
        assert launcher.embedded_servers(name)[1] == verify_db
    finally:
        pgserver = import_pgserver()
        for pgdata in (ROOT / ".pgdata" / name, ROOT / ".pgdata" / f"{name}-verify"):
            if pgdata.exists():
                handle = pgserver.get_server(pgdata)
                handle.cleanup_mode = "delete"
                handle.cleanup()


def test_the_stack_has_the_verify_connection_and_an_approver(launcher):
    stack = launcher.make_stack("postgresql://postgres@127.0.0.1/airflow", {
        "coldcopy_db": "postgresql://postgres@127.0.0.1/coldcopy",
        "coldcopy_verify_db": "postgresql://postgres@127.0.0.1:5433/postgres"}, port=8080, executor="LocalExecutor")
    env = stack.env()
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin,approver:admin"
    assert env["AIRFLOW_CONN_COLDCOPY_VERIFY_DB"].endswith(":5433/postgres")
    assert {"AIRFLOW_CONN_COLDCOPY_BACKUP_KEY", "AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY"} <= set(env)
    assert "approver" in launcher.__doc__ and "coldcopy_verify_db" in launcher.__doc__
