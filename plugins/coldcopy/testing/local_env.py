"""Where the demo, the tests and the benchmarks find a PostgreSQL server, and how they point Airflow at it.

Order of preference for the server: ``$COLDCOPY_PG_ADMIN_DSN``; the local server on 127.0.0.1:5432
(trust auth, user postgres) if it answers; otherwise an embedded PostgreSQL (the ``pgserver`` package)
whose data directory lives in the git-ignored ``.pgdata/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coldcopy import REPO_ROOT
from coldcopy.object_store import Bucket
from coldcopy.pg_tools import import_pgserver

ROOT = REPO_ROOT
LOCAL_SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def as_postgres(argv: list[str], *owned: Path) -> list[str]:
    """``argv`` run as the ``postgres`` user when we are root (PostgreSQL and PgBouncer refuse root), the
    ``owned`` paths handed to that user first."""
    if os.geteuid() != 0:
        return argv
    for path in owned:
        shutil.chown(path, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--", *argv]


def executable(name: str) -> str:
    """Path of a command: this venv's bin/ first (squawk), then PATH (psql, pg_dump), then pgserver's binaries."""
    for directory in (Path(sys.executable).parent, None):
        found = shutil.which(name, path=str(directory) if directory else None)
        if found:
            return found
    pgserver = import_pgserver()
    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    if bundled.exists():
        return str(bundled)
    raise FileNotFoundError(f"{name}: not in {Path(sys.executable).parent}, on PATH, or bundled with pgserver")


def client_args(dsn: str) -> list[str]:
    """``-h -p -U -d`` arguments of the PostgreSQL command-line clients for ``dsn``."""
    params = conninfo_to_dict(dsn)
    return ["-h", params.get("host", "localhost"), "-p", str(params.get("port", 5432)),
            "-U", params.get("user", "postgres"), "-d", params.get("dbname", "postgres")]


def psql_file(dsn: str, path: Path) -> None:
    """Apply one SQL file the runbook's manual way: ``psql -v ON_ERROR_STOP=1 -f``."""
    subprocess.run([executable("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *client_args(dsn), "-f", str(path)],
                   check=True, capture_output=True, text=True)


def embedded_server_dsn(name: str = "embedded", settings: dict[str, str] | None = None) -> str:
    """Start (or reuse) an embedded PostgreSQL under ``.pgdata/<name>``; it stops when this process exits.
    ``settings`` (e.g. ``{"wal_level": "logical"}``) are set with ALTER SYSTEM and the server restarted when
    they differ."""
    pgserver = import_pgserver()
    (ROOT / ".pgdata").mkdir(exist_ok=True)
    server = pgserver.get_server(ROOT / ".pgdata" / name, cleanup_mode="stop")
    if settings:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            changed = [k for k, v in settings.items()
                       if conn.execute("SELECT current_setting(%s)", (k,)).fetchone()[0] != v]
            for key in changed:
                conn.execute(f"ALTER SYSTEM SET {key} = '{settings[key]}'")  # our own literal settings
        if changed:
            from pgserver._commands import pg_ctl

            pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    return server.get_uri()


def admin_dsn(*, prefer_local: bool = True) -> str:
    """DSN of a superuser connection to the ``postgres`` database of the server to use."""
    if os.environ.get("COLDCOPY_PG_ADMIN_DSN"):
        return os.environ["COLDCOPY_PG_ADMIN_DSN"]
    if prefer_local:
        try:
            psycopg.connect(LOCAL_SERVER_DSN, connect_timeout=3).close()
            return LOCAL_SERVER_DSN
        except psycopg.OperationalError:
            pass
    return embedded_server_dsn()


def database_dsn(server_dsn: str, dbname: str) -> str:
    return make_conninfo(server_dsn, dbname=dbname)


def create_database(server_dsn: str, dbname: str, *, template: str | None = None, replace: bool = False) -> str:
    """Create ``dbname`` (dropping it first if ``replace``) and return its DSN."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        if replace:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(create)
    return database_dsn(server_dsn, dbname)


def drop_database(server_dsn: str, dbname: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


API_ROLES = ("anon", "authenticated", "service_role", "pgbouncer")


def prepare_verify_server(server_dsn: str) -> str:
    """A server for ``coldcopy_verify_db``: the roles the project's dumps grant to (what ``pg_dumpall
    --globals-only`` of production would bring). Returns ``server_dsn``."""
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        for role in API_ROLES:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    return server_dsn


def demo_verify_server(live_dsn: str) -> bool:
    """``make demo``'s ``coldcopy_verify_db``: the one given, else, for the embedded default target, a second
    embedded server (``.pgdata/demo-verify``; a drill never runs on the live one); False when there is none."""
    if not os.environ.get("AIRFLOW_CONN_COLDCOPY_VERIFY_DB") and str(ROOT / ".pgdata") in live_dsn:
        server = prepare_verify_server(embedded_server_dsn("demo-verify"))
        os.environ["AIRFLOW_CONN_COLDCOPY_VERIFY_DB"] = airflow_connection(server)
        print("  verify server: a second embedded PostgreSQL in .pgdata/demo-verify")
    return bool(os.environ.get("AIRFLOW_CONN_COLDCOPY_VERIFY_DB"))


def airflow_connection(dsn: str) -> str:
    """The ``AIRFLOW_CONN_COLDCOPY_DB`` value (JSON form, which also carries Unix-socket hosts) for ``dsn``."""
    params = conninfo_to_dict(dsn)
    conn = {
        "conn_type": "postgres",
        "host": params.get("host", "localhost"),
        "port": int(params.get("port", 5432)),
        "login": params.get("user", "postgres"),
        "password": params.get("password") or None,
        "schema": params.get("dbname", "postgres"),
    }
    return json.dumps({k: v for k, v in conn.items() if v is not None})


def dsn_from_airflow_connection(value: str) -> str:
    """Inverse of :func:`airflow_connection`, also accepting the URI form of ``AIRFLOW_CONN_*``."""
    if not value.lstrip().startswith("{"):
        return value.replace("postgres://", "postgresql://", 1)
    conn = json.loads(value)
    return make_conninfo(
        host=conn.get("host"), port=conn.get("port"), user=conn.get("login"),
        password=conn.get("password"), dbname=conn.get("schema"),
    )


class LocalS3:
    """moto's S3 server on a free loopback port: the S3 endpoint of the demo and the tests."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalS3:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="local-key-id", aws_secret_access_key="local-secret")

    def save(self, directory: Path) -> int:
        """Copy every bucket and object to ``directory/<bucket>/<key>`` (moto keeps nothing on disk).

        Written beside the previous copy and swapped in at the end, so an interrupted save loses nothing.
        """
        client, staging = self.client(), directory.with_name(directory.name + ".saving")
        shutil.rmtree(staging, ignore_errors=True)
        count = 0
        for bucket in client.list_buckets()["Buckets"]:
            (staging / bucket["Name"]).mkdir(parents=True)
            for key in Bucket(client, bucket["Name"]).list_keys():
                target = staging / bucket["Name"] / key
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket["Name"], key, str(target))
                count += 1
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
        return count

    def load(self, directory: Path) -> int:
        """Recreate the buckets and objects a :meth:`save` wrote; returns the number of objects."""
        client, count = self.client(), 0
        for bucket in sorted(p for p in directory.glob("*") if p.is_dir()) if directory.exists() else []:
            client.create_bucket(Bucket=bucket.name)
            for path in sorted(p for p in bucket.rglob("*") if p.is_file()):
                client.upload_file(str(path), bucket.name, path.relative_to(bucket).as_posix())
                count += 1
        return count


def spaces_connection(endpoint_url: str, bucket: str) -> str:
    """``AIRFLOW_CONN_COLDCOPY_SPACES`` (aws type) for an S3 endpoint and bucket (moto accepts any key)."""
    return json.dumps({
        "conn_type": "aws", "login": "local-key-id", "password": "local-secret",
        "extra": {"endpoint_url": endpoint_url, "region_name": "us-east-1",
                  "service_config": {"s3": {"bucket_name": bucket}}},
    })


def prepare_airflow() -> None:
    """Migrate Airflow's metadata database and create the heavy-maintenance pool (idempotent)."""
    from coldcopy.dag_defaults import HEAVY_POOL, HEAVY_POOL_DESCRIPTION, HEAVY_POOL_SLOTS

    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "db", "migrate"], check=True, capture_output=True)
    subprocess.run([*airflow, "pools", "set", HEAVY_POOL, str(HEAVY_POOL_SLOTS), HEAVY_POOL_DESCRIPTION],
                   check=True, capture_output=True)


def airflow_env() -> dict[str, str]:
    """Settings for an Airflow home in the repository: SQLite metadata, our dags/ and plugins/."""
    return {
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
