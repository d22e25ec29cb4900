"""`make airflow`: a complete local Airflow 3.3 with the ColdCopy DAGs, on the embedded default.

* Airflow's metadata: database ``airflow`` of an embedded PostgreSQL (``pgserver``, data in ``.pgdata/airflow``),
  run with ``wal_level=logical`` (the change archive, point-in-time restores and drills work out of the box);
* ``coldcopy_db``: database ``coldcopy`` of the same server, migrated and filled at ``SCALE`` (default 1) on
  first start — or your own database via ``AIRFLOW_CONN_COLDCOPY_DB`` (checked, never changed here);
* ``coldcopy_verify_db``: a second embedded PostgreSQL (``.pgdata/airflow-verify``) with the target's roles,
  where backups are verified, migrations rehearsed and drills run — or yours via ``AIRFLOW_CONN_COLDCOPY_VERIFY_DB``;
  none beside a target of your own (its server version and roles are yours to match);
* users ``admin`` and ``approver`` (a second approver), generated passwords printed at start;
* ``.airflow/bin/airflow``: the ``airflow`` CLI against this stack (``.airflow/airflow.env`` to source instead);
* ``coldcopy_spaces``: a local S3 endpoint (moto), bucket ``coldcopy-local``, saved to ``.airflow/s3/`` on stop
  and loaded on the next start;
* alerts: a local webhook sink appending each alert to ``.airflow/alerts.jsonl``;
* ``coldcopy_backup_key``: a random passphrase kept in ``.airflow/.backup_passphrase``;
* the ``coldcopy_db_heavy`` pool, created on every start;
* ``--executor celery`` (``make airflow EXECUTOR=celery``): Debian's ``redis-server`` on a free port as the Celery
  broker and two ``airflow celery worker`` processes (``worker-a``, ``worker-b``), started and stopped with the rest.

Ctrl-C (or ``make airflow-stop`` from another shell) stops every process this started and nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import psycopg  # noqa: E402

from coldcopy.testing import local_env  # noqa: E402
from coldcopy.testing.airflow_stack import AirflowStack, StackError  # noqa: E402
from coldcopy.testing.alert_sink import AlertSink  # noqa: E402

HOME = ROOT / ".airflow"
PID_FILE = HOME / "stack.pid"
BUCKET = "coldcopy-local"
SERVER = "airflow"  # .pgdata/airflow; the verify server in .pgdata/airflow-verify
TARGET_SETTINGS = {"wal_level": "logical"}  # as Supabase runs: the change archive needs logical decoding
USERS = {"approver": "admin"}  # beside admin: a second person for the approval gates


def running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def stop_running() -> None:
    pid = running_pid()
    if pid is None:
        print("make airflow is not running")
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(120):
        if running_pid() is None:
            print(f"stopped (pid {pid})")
            return
        time.sleep(0.5)
    raise SystemExit(f"pid {pid} did not stop within 60 s; see {HOME / 'logs'}")


def ensure_database(server_dsn: str, name: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return local_env.database_dsn(server_dsn, name) if exists else local_env.create_database(server_dsn, name)


def coldcopy_database(server_dsn: str) -> str:
    """The ``AIRFLOW_CONN_COLDCOPY_DB`` value: the user's, if it answers; else the embedded one, filled once."""
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_DB"):
        value = os.environ["AIRFLOW_CONN_COLDCOPY_DB"]
        try:
            psycopg.connect(local_env.dsn_from_airflow_connection(value), connect_timeout=5).close()
        except psycopg.OperationalError as error:
            raise SystemExit(f"coldcopy_db (AIRFLOW_CONN_COLDCOPY_DB) does not answer: {error}".strip()) from None
        print("coldcopy_db: your database from AIRFLOW_CONN_COLDCOPY_DB (not changed here)")
        return value
    dsn = ensure_database(server_dsn, "coldcopy")
    with psycopg.connect(dsn) as conn:
        migrated = conn.execute("SELECT to_regclass('coldcopy_ops.schema_migrations') IS NOT NULL").fetchone()[0]
    if not migrated:
        from coldcopy.migrations import discover_migrations
        from coldcopy.migrations.runner import MigrationRunner
        from coldcopy.testing import generate_data

        scale = int(os.environ.get("SCALE", "1"))
        print(f"coldcopy_db: first start: applying the migrations and generating data at SCALE={scale} ...")
        MigrationRunner(lambda: psycopg.connect(dsn)).apply_all(discover_migrations(), applied_by="make airflow")
        generate_data.generate(dsn, scale=scale)
    return local_env.airflow_connection(dsn)


def embedded_servers(name: str = SERVER) -> tuple[str, str | None]:
    """The embedded server (metadata, and ``coldcopy_db`` unless yours), ``wal_level=logical``; and the
    ``coldcopy_verify_db`` value: yours, else for the embedded target a second embedded server with its roles,
    else None (a target of your own: a verify server must match its version and roles)."""
    server = local_env.embedded_server_dsn(name, TARGET_SETTINGS)
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_VERIFY_DB"):
        return server, os.environ["AIRFLOW_CONN_COLDCOPY_VERIFY_DB"]
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_DB"):
        return server, None
    verify = local_env.prepare_verify_server(local_env.embedded_server_dsn(f"{name}-verify"))
    return server, local_env.airflow_connection(verify)


def make_stack(metadata: str, connections: dict[str, str], *, port: int, executor: str) -> AirflowStack:
    """The stack: the given connections, the generated secrets' connections, admin and :data:`USERS`."""
    stack = AirflowStack(HOME, metadata, port=port, parallelism=4, executor=executor, users=USERS,
                         connections=dict(connections))
    for conn_id, secret in (("coldcopy_backup_key", "backup_passphrase"), ("coldcopy_manifest_key", "manifest_key"),
                            ("coldcopy_subject_pepper", "subject_pepper"),
                            ("coldcopy_metrics_token", "metrics_token")):  # Prometheus: /coldcopy-health/metrics
        stack.connections[conn_id] = json.dumps({"conn_type": "generic", "password": stack.secret(secret)})
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop a running `make airflow`")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="celery: Debian's redis-server as broker and two Celery workers (make airflow "
                             "EXECUTOR=celery)")
    args = parser.parse_args()
    if args.stop:
        return stop_running()
    if (pid := running_pid()) is not None:
        raise SystemExit(f"make airflow is already running (pid {pid}): `make airflow-stop` first")
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    if local_env.port_in_use(port):
        raise SystemExit(f"port {port} is in use: stop what listens there, or choose another: "
                         f"AIRFLOW_PORT=8081 make airflow")
    started = time.monotonic()
    HOME.mkdir(exist_ok=True)
    server, verify_db = embedded_servers()
    metadata = ensure_database(server, "airflow")
    coldcopy_db = coldcopy_database(server)

    s3 = local_env.LocalS3().start()
    restored = s3.load(HOME / "s3")
    if BUCKET not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}:
        s3.client().create_bucket(Bucket=BUCKET)
    sink = AlertSink(record_to=HOME / "alerts.jsonl").__enter__()
    executor = {"local": "LocalExecutor", "celery": "CeleryExecutor"}[args.executor]
    stack = make_stack(metadata, {
        "coldcopy_db": coldcopy_db,
        "coldcopy_spaces": local_env.spaces_connection(s3.url, BUCKET),
        "coldcopy_alerts_webhook": sink.airflow_connection(),
        "coldcopy_dpo": sink.airflow_connection(),
        **({"coldcopy_verify_db": verify_db} if verify_db else {}),
    }, port=port, executor=executor)

    stopping = False

    def request_stop(*_) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        try:
            stack.start()
        except StackError as error:
            raise SystemExit(str(error)) from None
        PID_FILE.write_text(str(os.getpid()))
        print(f"""
Airflow 3.3 is up in {time.monotonic() - started:.0f} s: {stack.url}
  log in as:     admin / {stack.admin_password}   (kept in {stack.passwords_file.relative_to(ROOT)})
  approver:      approver / {stack.password("approver")}   (a second user for the approval gates, same file)
  airflow CLI:   {stack.cli.relative_to(ROOT)} variables get coldcopy_migration_approvers   (reaches this stack;
                 or `. {(HOME / "airflow.env").relative_to(ROOT)}`, or PATH="$PWD/.airflow/bin:$PATH")
  REST API:      {stack.url}/api/v2  (token: POST {stack.url}/auth/token with that user and password)
  component logs: .airflow/logs/<api-server|scheduler|dag-processor|triggerer>.log; task logs beside them
  alerts:        tail -f .airflow/alerts.jsonl   (every alert the DAGs send, one JSON per line)
  coldcopy_db:   {local_env.dsn_from_airflow_connection(coldcopy_db)}   (wal_level=logical when embedded)
  verify server: {verify_line(verify_db)}
  Spaces:        {s3.url} bucket {BUCKET} ({restored} object(s) from the last run)
DAGs start paused: unpause them in the UI. Ctrl-C or `make airflow-stop` stops everything started here.""",
              flush=True)
        while not stopping:
            for component, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"{component} exited ({process.returncode}); see .airflow/logs/{component}.log. Stopping.")
                    stopping = True
            time.sleep(1)
    finally:
        print("stopping Airflow ...", flush=True)
        stack.stop()
        saved = s3.save(HOME / "s3")
        s3.stop()
        sink.__exit__(None, None, None)
        PID_FILE.unlink(missing_ok=True)
        print(f"stopped; {saved} object(s) of the local S3 saved to .airflow/s3/")


def verify_line(verify_db: str | None) -> str:
    if verify_db is None:
        return ("none: set AIRFLOW_CONN_COLDCOPY_VERIFY_DB to a server of its own (no rehearsals, no drills "
                "without it; docs/backups.md)")
    return f"{local_env.dsn_from_airflow_connection(verify_db)}   (coldcopy_verify_db)"


if __name__ == "__main__":
    main()
