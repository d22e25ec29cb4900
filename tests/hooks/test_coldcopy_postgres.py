"""One way to connect: the connection's extras reach psycopg sessions and client programs alike, and a
client program sees no secret of the parent's environment."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook
from coldcopy.pg_tools import client_popen, pg_program


def with_extra(monkeypatch, dsn: str, **extra) -> ColdCopyPostgresHook:
    params = conninfo_to_dict(dsn)
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DB", json.dumps({
        "conn_type": "postgres", "host": params["host"], "port": int(params.get("port", 5432)),
        "login": params.get("user"), "schema": params["dbname"], "extra": extra}))
    return ColdCopyPostgresHook()


def test_sslmode_require_reaches_psycopg_and_pg_dump(empty_db, monkeypatch):
    """The test server has no TLS: sslmode=require must make every path refuse to connect."""
    hook = with_extra(monkeypatch, empty_db, sslmode="require")
    assert conninfo_to_dict(hook.dsn())["sslmode"] == "require"
    with pytest.raises(psycopg.OperationalError, match="SSL"), hook.session():
        pass
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(hook.dsn()).close()  # the path of the backups
    dump = client_popen([pg_program("pg_dump", 15), "-s"], hook.dsn(), stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    _, errors = dump.communicate()
    assert dump.returncode != 0 and b"SSL" in errors
    plain = with_extra(monkeypatch, empty_db, options="-c work_mem=7MB")
    with plain.session() as conn:  # and options= arrives too
        assert conn.execute("SHOW work_mem").fetchone()[0] == "7MB"
    with psycopg.connect(plain.dsn()) as conn:
        assert conn.execute("SHOW work_mem").fetchone()[0] == "7MB"


def test_client_programs_get_no_airflow_secret_and_no_password_in_argv(empty_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SOMETHING_ELSE", "postgresql://admin:hunter2@elsewhere/db")
    hook = with_extra(monkeypatch, empty_db, sslmode="disable")
    psql = client_popen([pg_program("psql", 15), "-X", "-At", "-c", r"\! env; ps -o args= -p $PPID"],
                        hook.dsn(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = psql.communicate()
    assert psql.returncode == 0, err
    assert "AIRFLOW_CONN_" not in out and "hunter2" not in out
    assert "sslmode=disable" in out  # the extra arrived in --dbname


def test_the_providers_connection_is_named_for_pg_stat_activity(empty_db, monkeypatch):
    """get_conn() (the migrations' and the e2e's path) used to arrive without its application_name: on-call saw
    an unnamed session, and a live test looking for the task's statement by name found nothing."""
    with_extra(monkeypatch, empty_db)
    hook = ColdCopyPostgresHook(application_name="coldcopy:coldcopy_migrations.201 add x", statement_timeout="3h")
    with hook.get_conn() as conn, psycopg.connect(empty_db, autocommit=True) as observer:
        assert conn.execute("SHOW application_name").fetchone()[0] == "coldcopy:coldcopy_migrations.201 add x"
        assert observer.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                ("coldcopy:coldcopy_migrations.201 add x",)).fetchone()[0] == 1


def test_the_dsn_carries_the_session_settings(empty_db, monkeypatch):
    with_extra(monkeypatch, empty_db)
    hook = ColdCopyPostgresHook(application_name="coldcopy:backup_to_spaces.backup_database", statement_timeout="3h")
    with psycopg.connect(hook.dsn()) as conn:  # the backups' path
        assert conn.execute("SHOW application_name").fetchone()[0] == "coldcopy:backup_to_spaces.backup_database"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "3h"


# Every extra the docs give a postgres connection (README "Connections", docs/backups.md): connecting with it works
# on every path — the provider's get_conn (sessions), the DSN (backups) and a client program (psql).
DOCUMENTED_EXTRAS = [{"cores": 2}, {"require_tls": True}, {"require_tls": "true", "sslmode": "disable"},
                     {"sslmode": "disable"}, {"options": "-c work_mem=7MB"}, {"connect_timeout": 5},
                     {"sslrootcert": "/nonexistent/root.crt", "sslmode": "prefer"}]


@pytest.mark.parametrize("extra", DOCUMENTED_EXTRAS, ids=lambda e: ",".join(e))
def test_every_documented_extra_connects_on_every_path(empty_db, monkeypatch, extra):
    hook = with_extra(monkeypatch, empty_db, **extra)  # the test server is on loopback: require_tls allows it
    for ours in ("cores", "require_tls"):
        assert ours not in hook.libpq_params() and ours not in conninfo_to_dict(hook.dsn())
    with hook.session() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(hook.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    psql = client_popen([pg_program("psql", 15), "-X", "-At", "-c", "SELECT 1"], hook.dsn(),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = psql.communicate()
    assert psql.returncode == 0 and out.strip() == "1", err


def test_an_unknown_extra_is_refused_by_name_before_connecting(empty_db, monkeypatch):
    from coldcopy.hooks.coldcopy_postgres import UnknownExtraError

    hook = with_extra(monkeypatch, empty_db, sslmdoe="require", cursor="dictcursor")  # cursor: the provider's own
    for path in (hook.libpq_params, hook.dsn, hook.get_conn):
        with pytest.raises(UnknownExtraError, match=r"'sslmdoe'.*neither libpq") as refused:
            path()
        assert "cursor" not in str(refused.value)
