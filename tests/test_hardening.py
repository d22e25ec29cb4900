"""The smaller holes of issue 19: query-text redaction, on_kill across containers and servers and without
locks, TLS settings reaching the client programs, a TLS requirement, and the pooler guard's nonce."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import psycopg
import pytest

from coldcopy import kill_targets
from coldcopy.health import redact
from coldcopy.pg_tools import client_popen, pg_program
from coldcopy.testing import local_env


@pytest.mark.parametrize(("query", "expected"), [
    ("SELECT * FROM leads WHERE email = 'a@b.com'", "SELECT * FROM leads WHERE email = ?"),
    ("SELECT 'it''s me'", "SELECT ?"),
    ("SELECT E'an \\'escaped\\' secret@x.com' AS x", "SELECT ? AS x"),
    ("SELECT e'x\\\\' , 'y'", "SELECT ? , ?"),
    ("DO $$ BEGIN PERFORM 'secret@x.com'; END $$", "DO ?"),
    ("SELECT $tag$ body with $$ and 'quotes' $tag$, $1", "SELECT ?, $1"),
    ("INSERT INTO leads (email) VALUES ('cut-off@exam", "INSERT INTO leads (email) VALUES (?"),
    ("SELECT $q$never closed secret@x.com", "SELECT ?"),
    ('SELECT "it\'s a column" FROM t WHERE name = \'Jo\'', 'SELECT "it\'s a column" FROM t WHERE name = ?'),
    ("SELECT type'x', price$1", "SELECT type?, price$1"),
])
def test_redaction_of_every_kind_of_literal(query, expected):
    assert redact(query) == expected


def sleeping_backend(dsn: str, name: str) -> subprocess.Popen:
    """A backend named ``name`` running ``pg_sleep`` from a psql process of its own (a connection used from a
    second thread and closed from the first can crash libpq)."""
    return subprocess.Popen([pg_program("psql", 15), "-X", "-q", "-c", "SELECT pg_sleep(60)",
                             psycopg.conninfo.make_conninfo(dsn, application_name=name)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def alive(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                            (name,)).fetchone()[0] > 0


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_on_kill_in_one_container_leaves_the_other_containers_backend_alive(migrated_db):
    """Two Celery containers run tasks with the same pid and counter: each process names its client programs
    with its own identity, so one task's on_kill terminates only its own backends."""
    ours = kill_targets.client_application_name("psql", migrated_db)
    theirs = ours.replace(kill_targets._PROCESS, "f" * len(kill_targets._PROCESS))  # same program, pid, counter
    assert theirs != ours
    mine, other = sleeping_backend(migrated_db, ours), sleeping_backend(migrated_db, theirs)
    assert wait_until(lambda: alive(migrated_db, ours) and alive(migrated_db, theirs))
    kill_targets.stop_all(migrated_db)
    assert wait_until(lambda: not alive(migrated_db, ours))
    assert alive(migrated_db, theirs)
    for process in (mine, other):
        process.kill()
        process.wait()


def test_on_kill_takes_no_lock_and_reaches_the_verification_server(migrated_db):
    verify_server = local_env.embedded_server_dsn()
    name = kill_targets.client_application_name("pg_restore", verify_server)
    psql = sleeping_backend(verify_server, name)
    assert wait_until(lambda: alive(verify_server, name))
    done = threading.Event()
    with kill_targets._lock:  # the signal handler interrupted the thread holding it
        worker = threading.Thread(target=lambda: (kill_targets.stop_all(migrated_db), done.set()), daemon=True)
        worker.start()
        assert done.wait(20), "stop_all waited for a lock inside on_kill"
    assert wait_until(lambda: not alive(verify_server, name))  # the backend on the other server is gone
    psql.kill()
    psql.wait()


def test_libpq_tls_settings_reach_pg_dump(migrated_db, monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "require")  # this server has ssl = off: only a client that got it fails
    dump = client_popen([pg_program("pg_dump", 15), "-s"], migrated_db, stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE)
    _, err = dump.communicate(timeout=60)
    assert dump.returncode != 0 and b"SSL" in err


def test_tls_can_be_required_for_remote_hosts(monkeypatch):
    from coldcopy.hooks.coldcopy_postgres import ColdCopyPostgresHook, InsecureConnectionError

    def hook(host: str, **extra) -> ColdCopyPostgresHook:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DB", json.dumps(
            {"conn_type": "postgres", "host": host, "login": "ops", "schema": "coldcopy", "extra": extra}))
        return ColdCopyPostgresHook()

    with pytest.raises(InsecureConnectionError, match="TLS is required"):
        hook("db.example.supabase.co", require_tls=True).libpq_params()
    with pytest.raises(InsecureConnectionError, match="'disable'"):
        hook("10.0.0.7", require_tls=True, sslmode="disable").dsn()
    assert hook("db.example.supabase.co", require_tls=True, sslmode="verify-full").libpq_params()["sslmode"] \
        == "verify-full"
    assert "require_tls" not in hook("127.0.0.1", require_tls=True).libpq_params()  # loopback carries no network
    assert hook("db.example.supabase.co").libpq_params()  # not required: as before


def test_finding_pg_dump_for_the_server_does_not_import_the_embedded_server(migrated_db):
    """Importing pgserver warns (XDG_RUNTIME_DIR) in every backup's log: it is only looked at when the Debian
    binaries and PATH have no client of the server's major version."""
    import sys

    with psycopg.connect(migrated_db) as conn:
        major = conn.info.server_version // 10000
    probe = (f"import sys; from coldcopy.pg_tools import pg_program; pg_program('pg_dump', {major}); "
             "print('pgserver' in sys.modules)")
    done = subprocess.run([sys.executable, "-W", "error", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False" and "RuntimeDirWarning" not in done.stderr


def test_the_embedded_server_is_imported_without_a_stray_warning():
    """``make demo`` and the tests import pgserver when no server answers: its XDG_RUNTIME_DIR warning was the
    first line of the demo's output (issue 24)."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    probe = "from coldcopy.pg_tools import import_pgserver; import_pgserver(); import pgserver"
    bare = subprocess.run([sys.executable, "-c", "import pgserver"], capture_output=True, text=True, env=env)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "RuntimeDirWarning" in bare.stderr  # the package itself still warns
    assert done.stderr == ""


def test_a_backup_and_its_restore_verification_raise_no_warning(generated_db, spaces, admin_dsn):
    """No stray warning in a backup's log (issue 24): a backup and its restore verification run in a process
    where every warning (other than third-party deprecations, as in the test run) is an error."""
    import os
    import sys

    probe = (
        "import warnings, sys\n"
        "warnings.simplefilter('error')\n"
        "warnings.filterwarnings('ignore', category=DeprecationWarning)\n"
        "from coldcopy.backups import BackupRunner\n"
        "from coldcopy.object_store import Bucket\n"
        "from coldcopy import manifests\n"
        "runner = BackupRunner(sys.argv[1], Bucket.from_connection(), 'passphrase',\n"
        "                      keyring=manifests.Keyring.from_secret('k' * 40))\n"
        "key = runner.backup().object_key\n"
        "runner.verify(key, sys.argv[2])\n"
        "print('done')\n")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run([sys.executable, "-c", probe, generated_db, local_env.database_dsn(admin_dsn, "postgres")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("done"), done.stderr[-3000:]
    assert "Warning" not in done.stderr, done.stderr[-3000:]
