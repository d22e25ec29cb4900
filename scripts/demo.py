"""`make demo`: run the ColdCopy DAGs end to end and print what happened.

Target database: the Airflow connection ``coldcopy_db`` if ``AIRFLOW_CONN_COLDCOPY_DB`` is set (nothing
is dropped there); with ``SUPABASE=1`` (``make demo SUPABASE=1``) a throwaway cluster shaped like a hosted Supabase
project, the DAGs run as its non-superuser ``postgres``; otherwise an embedded PostgreSQL (``pgserver``, data in
``.pgdata/demo``) with a fresh ``coldcopy`` database. Airflow's own metadata lives in SQLite under ``.airflow/``.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from coldcopy.testing import generate_data, local_env  # noqa: E402
from coldcopy.testing.local_env import LocalS3  # noqa: E402

os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
for key, value in local_env.airflow_env().items():
    os.environ.setdefault(key, value)

import psycopg  # noqa: E402
from demo_summaries import (  # noqa: E402 - scripts/demo_summaries.py, beside this file
    gdpr_requests,
    print_backup_summary,
    print_gdpr_summary,
    print_maintenance_summary,
    print_partition_summary,
    print_refresh_summary,
    print_schema_summary,
)


def target_database() -> str:
    if os.environ.get("SUPABASE") == "1" and not os.environ.get("AIRFLOW_CONN_COLDCOPY_DB"):
        import atexit

        from coldcopy.testing import servers

        cluster = servers.SupabaseShapedCluster().start()
        atexit.register(cluster.stop)
        print("Target: a throwaway cluster shaped like a hosted Supabase project (sql/testing/supabase_shape.sql), "
              "every DAG as its non-superuser login postgres")
        os.environ["AIRFLOW_CONN_COLDCOPY_DB"] = local_env.airflow_connection(cluster.dsn)
        return cluster.dsn
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_DB"):
        print("Target: the coldcopy_db connection from AIRFLOW_CONN_COLDCOPY_DB")
        return local_env.dsn_from_airflow_connection(os.environ["AIRFLOW_CONN_COLDCOPY_DB"])
    print("Target: embedded PostgreSQL (pgserver) in .pgdata/demo, database 'coldcopy' (recreated)")
    # wal_level=logical, as Supabase runs: the change archive (point-in-time recovery) needs it
    dsn = local_env.create_database(local_env.embedded_server_dsn("demo", {"wal_level": "logical"}), "coldcopy",
                                    replace=True)
    os.environ["AIRFLOW_CONN_COLDCOPY_DB"] = local_env.airflow_connection(dsn)
    return dsn


def target_bucket() -> LocalS3 | None:
    """The coldcopy_spaces connection if given, else a local S3 endpoint (moto) with a fresh bucket."""
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_SPACES"):
        print("Object storage: the coldcopy_spaces connection from AIRFLOW_CONN_COLDCOPY_SPACES")
        return None
    endpoint = local_env.LocalS3().start()
    os.environ["AIRFLOW_CONN_COLDCOPY_SPACES"] = local_env.spaces_connection(endpoint.url, "coldcopy-demo")
    from coldcopy.object_store import Bucket

    Bucket.from_connection().client.create_bucket(Bucket="coldcopy-demo")
    print(f"Object storage: local S3 endpoint (moto) at {endpoint.url}, bucket coldcopy-demo")
    return endpoint


def backup_key() -> None:
    """The coldcopy_backup_key connection if given, else a throwaway passphrase for this demo run only."""
    if os.environ.get("AIRFLOW_CONN_COLDCOPY_BACKUP_KEY"):
        return
    import json
    import secrets

    os.environ["AIRFLOW_CONN_COLDCOPY_BACKUP_KEY"] = json.dumps(
        {"conn_type": "generic", "password": secrets.token_urlsafe(24)})
    print("Backup key: a random passphrase for this run only (set AIRFLOW_CONN_COLDCOPY_BACKUP_KEY to keep one)")
    if not os.environ.get("AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY"):
        os.environ["AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY"] = json.dumps(
            {"conn_type": "generic", "password": secrets.token_hex(32)})
        print("Manifest signing key: random, for this run only (set AIRFLOW_CONN_COLDCOPY_MANIFEST_KEY to keep one)")
    if not os.environ.get("AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER"):
        os.environ["AIRFLOW_CONN_COLDCOPY_SUBJECT_PEPPER"] = json.dumps(
            {"conn_type": "generic", "password": secrets.token_hex(32)})


REFRESH_DAGS = ["refresh_campaign_analytics", "refresh_email_deliverability", "refresh_lead_engagement",
                "refresh_workspace_usage"]


def run(dag, label: str, **conf) -> None:
    from coldcopy.testing.in_process import result_lines, run_dag

    started = time.monotonic()
    dag_run = run_dag(dag, conf=conf, require_results=False)  # the demo shows a silent task rather than stopping
    states: dict[str, int] = {}
    for ti in dag_run.get_task_instances():
        states[str(ti.state)] = states.get(str(ti.state), 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    print(f"  {dag.dag_id} [{label}]: {dag_run.state} in {time.monotonic() - started:.1f} s ({summary})")
    for task, line in result_lines(dag_run).items():  # each task's one result line (ColdCopyOperator.say)
        text = f"      {task}: {line or '(said nothing)'}"
        print(text if len(text) <= 160 else text[:159] + "…")
    if dag_run.state != "success":
        raise SystemExit(f"{dag.dag_id} [{label}] did not succeed; see the task logs above")


def pitr_demo(bag, dsn: str) -> None:
    """The change archive: setup, a base backup, an accident, and a restore as of the second before it."""
    with psycopg.connect(dsn) as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]
    if wal_level != "logical":
        print(f"  change_archive: skipped (the target runs wal_level={wal_level}; logical decoding needs logical)")
        return
    run(bag.get_dag("change_archive_setup"), "dry run: what it would create", dry_run=True)
    run(bag.get_dag("change_archive_setup"), "publication and slot: a chain starts", dry_run=False)
    run(bag.get_dag("backup_to_spaces"), "the chain's first base backup", retention_dry_run=True)
    time.sleep(1.1)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    time.sleep(1.1)
    with psycopg.connect(dsn, autocommit=True) as conn:  # the accident: one workspace's campaigns deleted
        workspace, campaigns = conn.execute(
            "SELECT workspace_id, count(*) FROM campaigns GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1").fetchone()
        conn.execute("DELETE FROM campaigns WHERE workspace_id = %s", (workspace,))
    print(f"  the accident: {campaigns} campaigns of workspace {workspace} deleted after {before:%H:%M:%S}")
    run(bag.get_dag("change_archive"), "drain the slot for 8 s", run_for_s=8)
    target = "coldcopy_as_of_demo"
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")  # this demo's own scratch target
    run(bag.get_dag("restore_from_spaces"), f"as of {before:%H:%M:%S}, the second before the accident",
        backup="latest", target_database=target, tables=[],
        as_of=f"{before:%Y-%m-%dT%H:%M:%SZ}")
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname=target)) as conn:
        back = conn.execute("SELECT count(*) FROM campaigns WHERE workspace_id = %s", (workspace,)).fetchone()[0]
    print(f"  {target}: the workspace has its {back} campaigns again (the live database: 0)")
    if not local_env.demo_verify_server(dsn):
        print("  restore_drill: skipped (a target of your own needs AIRFLOW_CONN_COLDCOPY_VERIFY_DB: its own server)")
        return
    run(bag.get_dag("restore_drill"), "a random second of the archive, on the verify server", as_of=None, jobs=0)
    with psycopg.connect(dsn) as conn:
        drill = conn.execute("SELECT as_of, outcome, rto_s, restore_s, replay_s, rpo_s FROM "
                             "coldcopy_ops.restore_drills ORDER BY id DESC LIMIT 1").fetchone()
    print(f"  coldcopy_ops.restore_drills: as of {drill[0]:%H:%M:%S} {drill[1]}, RTO {drill[2]:.1f} s (restore "
          f"{drill[3]:.1f}, replay {drill[4]:.1f}), RPO {drill[5]:.1f} s")


def drift_demo(bag, dsn: str) -> None:
    """After the whole life above (rotation, restores, GDPR, capture installed): the live schema is still exactly
    what the applied files build; the check fails the demo otherwise."""
    if not local_env.demo_verify_server(dsn):
        print("  schema_drift: skipped (a target of your own needs AIRFLOW_CONN_COLDCOPY_VERIFY_DB: its own server)")
        return
    run(bag.get_dag("schema_drift"), "the live schema against what the applied files build")
    with psycopg.connect(dsn) as conn:
        drifted, objects, built = conn.execute("SELECT drifted, objects, expected_s FROM coldcopy_ops.schema_drift "
                                               "ORDER BY id DESC LIMIT 1").fetchone()
    print(f"  coldcopy_ops.schema_drift: {drifted} of {objects} objects drifted (expected schema built in "
          f"{built:.1f} s on the verify server)")
    if drifted:
        raise SystemExit("schema drift after the demo's own jobs: a job changes the schema the files build")


def main() -> None:
    dsn = target_database()
    endpoint = target_bucket()
    backup_key()
    print("Preparing Airflow metadata (SQLite) and the coldcopy_db_heavy pool ...")
    local_env.prepare_airflow()

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    migrations = bag.get_dag("coldcopy_migrations")
    print("\nRunning DAGs:")
    run(migrations, "dry run: plan only", dry_run=True)
    run(migrations, "apply", dry_run=False)
    run(migrations, "re-run: nothing left to apply", dry_run=False)

    scale = int(os.environ.get("SCALE", "1"))
    started = time.monotonic()
    counts = generate_data.generate(dsn, scale=scale)
    print(f"  generated data at scale {scale} in {time.monotonic() - started:.1f} s: "
          + ", ".join(f"{n:,} {table}" for table, n in counts.items()))
    for dag_id in REFRESH_DAGS:
        run(bag.get_dag(dag_id), "first run", force=False)
    for dag_id in REFRESH_DAGS:
        run(bag.get_dag(dag_id), "again, nothing changed", force=False)
    run(bag.get_dag("partition_maintenance"), "archive months older than 12")
    run(bag.get_dag("partition_maintenance"), "again: nothing left to do")
    run(bag.get_dag("backup_to_spaces"), "backup, verify by restoring, retention", retention_dry_run=False)
    run(bag.get_dag("db_maintenance_daily"), "targeted vacuum, cache purge", all_tables=False)
    run(bag.get_dag("db_maintenance_weekly"), "invalid indexes, reindex, VACUUM FULL, analyze")
    run(bag.get_dag("db_health"), "every check, recorded with history", thresholds={})

    from coldcopy.testing.alert_sink import AlertSink

    with AlertSink() as dpo:  # where export links and passphrases go (coldcopy_dpo), unless one is configured
        os.environ.setdefault("AIRFLOW_CONN_COLDCOPY_DPO", dpo.airflow_connection())
        gdpr_requests(dsn)
        run(bag.get_dag("gdpr_requests"), "an access request and an erasure")
        run(bag.get_dag("gdpr_retention"), "retention policies")
        print_gdpr_summary(dsn, dpo)

    target = "coldcopy_restored_demo"
    with psycopg.connect(psycopg.conninfo.make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {target} WITH (FORCE)")  # this demo's own scratch target
    run(bag.get_dag("restore_from_spaces"), "latest backup into a new database, erasures re-applied",
        backup="latest", target_database=target, tables=[])

    from coldcopy import manifests
    from coldcopy.backups import backup_passphrase
    from coldcopy.object_store import Bucket
    from coldcopy.partitions import PartitionManager

    with psycopg.connect(dsn, autocommit=True) as conn:  # the grace period passes: drop the detached months
        manager = PartitionManager(conn, keyring=manifests.keyring(), passphrase=backup_passphrase())
        dropped = manager.drop_detached(Bucket.from_connection(), grace=datetime.timedelta(0))
    if dropped:
        month = dropped[-1].removeprefix("email_events_").replace("_", "-")
        run(bag.get_dag("partition_restore"), f"bring {month} back from its archive", month=month, hold_days=30)
    pitr_demo(bag, dsn)
    drift_demo(bag, dsn)
    print_schema_summary(dsn)
    print_refresh_summary(dsn)
    print_partition_summary(dsn)
    print_backup_summary(dsn)
    print_maintenance_summary(dsn)
    if endpoint:
        endpoint.stop()
    print("\nDemo finished.")


if __name__ == "__main__":
    main()
