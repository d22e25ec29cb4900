"""Throwaway PostgreSQL clusters (their own settings, restarts) and a local PgBouncer, for tests and benches."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coldcopy.testing.local_env import ROOT, as_postgres, executable, free_port, port_in_use  # noqa: F401


class ThrowawayCluster:
    """A PostgreSQL cluster of its own (initdb, pg_ctl) on a free loopback port, for what the shared server
    cannot do in a test: other ``shared_preload_libraries``, a restart in the middle of a job.

    Uses the system's PostgreSQL binaries (Debian's /usr/lib/postgresql/<v>/bin), else pgserver's. As root,
    the cluster runs as the ``postgres`` user (PostgreSQL refuses to run as root).

    :param settings: server settings (``-c name=value``), e.g. ``{"shared_preload_libraries": "pg_stat_statements"}``.
    """

    bootstrap_user = "postgres"  # initdb -U: the cluster's superuser

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        import glob
        import tempfile

        # Its own top directory: the postgres user cannot enter root's private temporary directories.
        self.home = Path(tempfile.mkdtemp(prefix="coldcopy-pg-"))
        self.directory = self.home / "data"
        self.settings = settings or {}
        system = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        self.bindir = Path(system[-1]).parent if system else Path(executable("initdb")).parent
        self.port = free_port()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, owned: tuple[Path, ...] = ()) -> None:
        done = subprocess.run(as_postgres(list(args), *owned), capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")

    def start(self) -> ThrowawayCluster:
        if not (self.directory / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.directory), "-U", self.bootstrap_user, "-A", "trust",
                      "--no-sync", owned=(self.home,))
        options = " ".join([f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
                            *(f"-c {k}={v}" for k, v in self.settings.items())])
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.directory), "-o", options, "-w", "-t", "60",
                  "-l", str(self.directory / "server.log"), "start")
        return self

    def restart(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.directory), "-m", mode, "-w", "-t", "60",
                  "-l", str(self.directory / "server.log"), "restart")

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if (self.directory / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.directory), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.home, ignore_errors=True)


class SupabaseShapedCluster(ThrowawayCluster):
    """A cluster shaped like a hosted Supabase project (sql/testing/supabase_shape.sql): bootstrap superuser
    ``supabase_admin``; ``postgres`` a login without superuser; the platform's schemas, roles, extensions,
    default privileges and API-role timeouts, built in the platform's order (roles and extensions, then the
    grants that follow them, then a project's own grants on ``extensions``: what a real project's dumps hold);
    Supabase's settings (``wal_level=logical``, 5 replication slots, ``max_slot_wal_keep_size`` 4 GB,
    pg_stat_statements preloaded); and, like the platform's own services, a superuser session held open on the
    database ``postgres`` (:meth:`start`). :attr:`dsn` is the project's
    login: ``postgres`` on the database ``postgres``; :attr:`admin_dsn` the platform's."""

    bootstrap_user = "supabase_admin"
    SETTINGS = {"wal_level": "logical", "max_replication_slots": "5", "max_wal_senders": "10",
                "max_slot_wal_keep_size": "4GB", "shared_preload_libraries": "pg_stat_statements",
                "max_connections": "200"}

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        super().__init__({**self.SETTINGS, **(settings or {})})
        self.platform = None

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://supabase_admin@127.0.0.1:{self.port}/postgres"

    def start(self) -> SupabaseShapedCluster:
        fresh = not (self.directory / "PG_VERSION").exists()
        super().start()
        if fresh:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute((ROOT / "sql" / "testing" / "supabase_shape.sql").read_text())
        self.platform = psycopg.connect(self.admin_dsn, autocommit=True, application_name="supabase platform")
        return self

    def stop(self) -> None:
        if self.platform is not None:
            self.platform.close()
        super().stop()


class LocalPgBouncer:
    """Debian's PgBouncer on a free loopback port with ``include/pgbouncer.ini`` (transaction pooling,
    ``auth_query`` through migration 203's ``pgbouncer.get_auth()``), in front of ``server_dsn``'s server.

    Only what a test machine must change is changed: the port, the files under a directory of its own, and
    ``[databases]`` (a wildcard to the given server, so every throwaway database is reachable). As root it
    runs as the ``postgres`` user (PgBouncer refuses root).
    """

    def __init__(self, server_dsn: str, *, settings: dict[str, str] | None = None) -> None:
        import configparser
        import tempfile

        self.server = conninfo_to_dict(server_dsn)
        self.home = Path(tempfile.mkdtemp(prefix="coldcopy-pgbouncer-"))
        self.port = free_port()
        config = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
        config.optionxform = str
        config.read(ROOT / "include" / "pgbouncer.ini")
        config["databases"] = {"*": f"host={self.server.get('host', '127.0.0.1')} port={self.server.get('port', 5432)} "
                                    "auth_user=pgbouncer"}
        config["pgbouncer"].update({
            "listen_port": str(self.port), "unix_socket_dir": "", "auth_file": str(self.home / "userlist.txt"),
            "logfile": str(self.home / "pgbouncer.log"), "pidfile": str(self.home / "pgbouncer.pid"),
            **(settings or {})})
        with open(self.home / "pgbouncer.ini", "w") as out:
            config.write(out)
        # The pgbouncer role's own secret, for PgBouncer's auth_query login (the test server trusts loopback).
        (self.home / "userlist.txt").write_text('"pgbouncer" "local-test-only"\n')
        self.process: subprocess.Popen | None = None

    def dsn(self, dbname: str, user: str = "postgres", password: str | None = None) -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname, user=user, password=password)

    def start(self) -> LocalPgBouncer:
        import time

        self._pooler_role_logs_in()
        argv = [shutil.which("pgbouncer") or "/usr/sbin/pgbouncer", str(self.home / "pgbouncer.ini")]
        self.process = subprocess.Popen(as_postgres(argv, self.home, *self.home.iterdir()),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if port_in_use(self.port):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        log = (self.home / "pgbouncer.log").read_text() if (self.home / "pgbouncer.log").exists() else ""
        raise RuntimeError(f"PgBouncer did not start on port {self.port}: {log[-2000:]}")

    def _pooler_role_logs_in(self) -> None:
        """The out-of-band step of migration 203 (the operator gives ``pgbouncer`` its login and secret): on a
        test server that is also a verification server, the role may have been made there first, NOLOGIN, as the
        roles a restored dump names are (``verify_roles``, ``local_env.prepare_verify_server``), by a tier running
        beside this one; PgBouncer then waits out ``query_wait_timeout`` on every client."""
        with psycopg.connect(make_conninfo(**{**self.server, "dbname": "postgres"}), autocommit=True) as conn:
            conn.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbouncer' "
                         "AND NOT rolcanlogin) THEN ALTER ROLE pgbouncer LOGIN; END IF; END $$")

    def _terminate(self) -> None:
        if self.process and self.process.poll() is None:
            import signal

            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def restart(self) -> None:
        """Stop and start again on the same port: every client connection is cut."""
        self._terminate()
        self.start()

    def __enter__(self) -> LocalPgBouncer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop PgBouncer and delete its directory."""
        self._terminate()
        shutil.rmtree(self.home, ignore_errors=True)
