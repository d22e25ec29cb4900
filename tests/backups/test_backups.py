"""Backups to a real S3 endpoint, restored by real pg_restore into real databases."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import manifests
from coldcopy.backups import BackupError, BackupRunner
from coldcopy.backups.layout import ORPHAN_AFTER
from coldcopy.operators.backups import VerifyBackupOperator
from coldcopy.testing import local_env
from coldcopy.testing.alert_sink import AlertSink
from coldcopy.testing.in_process import run_dag
from tests.conftest import KEYRING, FakeTaskInstance

DAGS = Path(__file__).resolve().parents[2] / "dags"
KEY_TABLES = ["public.workspaces", "public.leads", "public.email_events", "public.gdpr_audit_log"]


def table_facts(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        tables = [t for (t,) in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'coldcopy_ops') ORDER BY 1")]
        facts = {t: (conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0],) for t in tables}
        for t in KEY_TABLES:  # and a checksum of every row of the key tables (email_events: all partitions)
            facts[f"checksum {t}"] = conn.execute(
                f"SELECT count(*), coalesce(sum(hashtextextended(x::text, 0)), 0) FROM {t} x").fetchone()
    return facts


@pytest.fixture
def runner(generated_db, spaces, backup_key) -> BackupRunner:
    return BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)


def test_round_trip_restores_every_table(runner, generated_db, new_database):
    result = runner.backup()
    counts = result.manifest["row_counts"]
    assert sum(n for t, n in counts.items() if t.startswith("public.email_events_")) > 30_000
    target = new_database()
    runner.restore(result.object_key, target)
    source, restored = table_facts(generated_db), table_facts(target)
    assert len(source) > 60 and restored == source


def test_object_is_really_encrypted_and_opens_with_stock_tools(runner, spaces, backup_key, tmp_path):
    client, bucket = spaces.client, spaces.name
    key = runner.backup().object_key
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert b"PGDMP" not in body and b"email_events" not in body and b"workspaces" not in body
    (tmp_path / "backup.gpg").write_bytes(body)
    decrypted = subprocess.run(
        f"gpg --batch --pinentry-mode loopback --passphrase-fd 0 --decrypt {tmp_path / 'backup.gpg'} | zstd -d -c",
        shell=True, input=backup_key.encode(), capture_output=True, check=True).stdout
    assert decrypted.startswith(b"PGDMP")
    packets = subprocess.run(["gpg", "--list-packets", "--batch", "--pinentry-mode", "loopback", "--passphrase",
                              backup_key, str(tmp_path / "backup.gpg")], capture_output=True, text=True).stdout
    assert "symkey enc packet" in packets and "cipher 9" in packets  # 9 = AES256


def test_tampered_object_or_wrong_key_fails_verification_and_alerts(runner, spaces, generated_db, admin_dsn,
                                                                     coldcopy_conn, monkeypatch):
    client, bucket = spaces.client, spaces.name
    key = runner.backup().object_key
    assert runner.verify(key, admin_dsn)["tables"] > 60

    wrong_key = BackupRunner(generated_db, spaces, "not the passphrase",
                             keyring=manifests.Keyring.from_secret("another manifest secret of 32+ characters"))
    with pytest.raises(BackupError, match="unknown key"):  # the manifest is refused first
        wrong_key.verify(key, admin_dsn)

    body = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(body))
    coldcopy_conn(generated_db)
    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", sink.airflow_connection())
        ti = FakeTaskInstance(dag_id="backup_to_spaces", run_id="r", task_id="verify_database")
        with pytest.raises(AirflowFailException, match="object does not match its signed manifest"):
            VerifyBackupOperator(task_id="verify_database", backup_key=key).execute({"ti": ti, "params": {}})
        assert sink.texts() == []  # AirflowFailException: no retry; on_failure_callback pages once
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT verification FROM coldcopy_ops.backup_log WHERE object_key = %s",
                            (key,)).fetchone()[0] == "failed"


def test_upload_failure_half_way_leaves_nothing_and_the_retry_succeeds(generated_db, faulty_spaces, backup_key):
    proxy, spaces = faulty_spaces
    client, bucket = spaces.client, spaces.name
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)
    proxy.fail_after(1024 * 1024)  # the upload starts, then the endpoint goes away in the middle of it
    with pytest.raises((BackupError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
        runner.backup()
    proxy.heal()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0  # no object, no manifest
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT count(*) FROM coldcopy_ops.backup_log").fetchone()[0] == 0
    result = runner.backup()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {result.object_key, result.object_key.removesuffix(".dump.zst.gpg") + ".manifest.json"}


def backup_manifest(key: str, klass: str, stamp: datetime) -> dict:
    """A complete backup manifest for an object placed by hand."""
    return {"database": "coldcopy", "database_size_bytes": 1, "server_version": "15", "pg_dump_version": "15",
            "kind": "database", "tables": None, "row_counts": {}, "row_counts_exact_in_dump_snapshot": True,
            "object_key": key, "byte_size": 1, "sha256": "", "format": "", "restore": "", "retention_class": klass,
            "expires_after_days": 30, "started_at": stamp.isoformat(), "finished_at": stamp.isoformat()}


def test_retention_deletes_exactly_the_expired(runner, spaces, generated_db):
    client, bucket = spaces.client, spaces.name
    now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

    def place(klass: str, age_days: int, label: str = "coldcopy") -> str:
        stamp = now - timedelta(days=age_days)
        key = f"backups/{klass}/{stamp:%Y/%m/%d}/{label}-{stamp:%Y%m%dT%H%M%SZ}.dump.zst.gpg"
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
        client.put_object(Bucket=bucket, Key=key.removesuffix(".dump.zst.gpg") + ".manifest.json",
                          Body=manifests.dump(backup_manifest(key, klass, stamp), runner.keyring, type="backup"))
        return key

    standard = {age: place("standard", age) for age in (1, 10, 29, 31, 45, 90)}
    compliance = {age: place("compliance", age) for age in (40, 200, 364, 366, 500)}
    leads = {age: place("standard", age, "coldcopy-leads") for age in (35, 60)}  # another kind: a table set
    with psycopg.connect(generated_db, autocommit=True) as conn:
        runner.log.ensure(conn)
        # only old verified ones: the newest verified of each kind survives
        for key in (standard[45], compliance[500], leads[35], leads[60]):
            conn.execute("INSERT INTO coldcopy_ops.backup_log (object_key, manifest_key, kind, retention_class, "
                         "byte_size, sha256, started_at, finished_at, verification) "
                         "VALUES (%s, '', 'database', 'standard', 1, '', now(), now(), 'verified')", (key,))
    expected = sorted([standard[31], standard[90], compliance[366], compliance[500], leads[60]])
    assert sorted(runner.apply_retention(dry_run=True, now=now)) == expected
    assert len(client.list_objects_v2(Bucket=bucket)["Contents"]) == 26  # dry run deleted nothing
    assert sorted(runner.apply_retention(dry_run=False, now=now)) == expected
    left = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"] if o["Key"].endswith(".gpg")}
    assert standard[45] in left and compliance[364] in left and leads[35] in left and not set(expected) & left
    assert len(client.list_objects_v2(Bucket=bucket)["Contents"]) == 2 * len(left)  # manifests went too


def test_a_retention_killed_between_its_deletes_leaves_nothing_the_next_run_keeps(runner, spaces, generated_db):
    """The fault campaign's findings (issue 45): retention SIGKILLed after deleting an expired backup's object and
    before its manifest left the manifest naming nothing, and a backup SIGKILLed mid-stream left its multipart
    upload open (a new key each run: nothing aborted it); no later run cleaned either. The manifest now goes first
    (a kill between leaves an orphan object, which the orphan sweep deletes), stray manifests are swept, and
    uploads under backups/ older than ORPHAN_AFTER are aborted."""
    client, bucket = spaces.client, spaces.name
    stamp = datetime.now(UTC) - timedelta(days=40)
    stray = f"backups/standard/{stamp:%Y/%m/%d}/coldcopy-{stamp:%Y%m%dT%H%M%SZ}.dump.zst.gpg"
    client.put_object(Bucket=bucket, Key=stray.removesuffix(".dump.zst.gpg") + ".manifest.json",
                      Body=manifests.dump(backup_manifest(stray, "standard", stamp), runner.keyring, type="backup"))
    stamp -= timedelta(days=1)
    orphan = f"backups/standard/{stamp:%Y/%m/%d}/coldcopy-{stamp:%Y%m%dT%H%M%SZ}.dump.zst.gpg"
    client.put_object(Bucket=bucket, Key=orphan, Body=b"x")  # what a kill between the new order's deletes leaves
    next_run = datetime.now(UTC) + ORPHAN_AFTER + timedelta(minutes=1)
    assert runner.apply_retention(dry_run=False, now=datetime.now(UTC)) == []  # younger than ORPHAN_AFTER: kept
    upload = client.create_multipart_upload(Bucket=bucket, Key=orphan.replace("coldcopy-", "killed-"))  # mid-stream
    client.upload_part(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"], PartNumber=1, Body=b"x")
    deleted = runner.apply_retention(dry_run=False, now=next_run)
    assert sorted(deleted) == sorted([orphan, stray.removesuffix(".dump.zst.gpg") + ".manifest.json"])
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # its parts are billed no more


def test_backup_and_restore_dags_end_to_end(generated_db, spaces, backup_key, coldcopy_conn, airflow_db,
                                            admin_dsn):
    from airflow.dag_processing.dagbag import DagBag

    coldcopy_conn(generated_db)
    bag = DagBag(dag_folder=str(DAGS))
    run = run_dag(bag.get_dag("backup_to_spaces"), conf={"retention_dry_run": False})
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    with psycopg.connect(generated_db) as conn:
        rows = conn.execute("SELECT kind, tables, retention_class, verification FROM coldcopy_ops.backup_log "
                            "ORDER BY kind, tables").fetchall()
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("database", None, "verified"), ("tables", ["public.users"], "verified"),
        ("tables", ["public.workspaces"], "verified")]
    assert {r[2] for r in rows} == {"compliance"}  # each the first of its kind this month
    second = run_dag(bag.get_dag("backup_to_spaces"), conf={"retention_dry_run": True})
    assert second.state == "success"
    with psycopg.connect(generated_db) as conn:
        classes = conn.execute("SELECT retention_class, count(*) FROM coldcopy_ops.backup_log GROUP BY 1").fetchall()
    assert sorted(classes) == [("compliance", 3), ("standard", 3)]

    live = psycopg.conninfo.conninfo_to_dict(generated_db)["dbname"]
    refused = run_dag(bag.get_dag("restore_from_spaces"), conf={
        "backup": "latest", "target_database": live, "tables": []})
    assert refused.state == "failed"  # the live database: asked to approvers, and none is named (Variable unset)
    assert {ti.task_id: ti.state for ti in refused.get_task_instances()} == {"approve": "failed",
                                                                             "restore": "upstream_failed"}
    target = f"{live}_restored"
    try:
        restored = run_dag(bag.get_dag("restore_from_spaces"), conf={
            "backup": "latest", "target_database": target, "tables": []})
        assert restored.state == "success"
        assert table_facts(local_env.database_dsn(admin_dsn, target)) == table_facts(generated_db)
    finally:
        local_env.drop_database(admin_dsn, target)


def test_verification_runs_on_the_verify_connection_and_transient_failures_are_retried(
        generated_db, spaces, backup_key, coldcopy_conn, monkeypatch):
    """coldcopy_verify_db (here: the embedded PostgreSQL 16 server) takes the scratch database; an
    unreachable one is a transient failure (Airflow retries it), not a bad backup (which fails for good)."""
    coldcopy_conn(generated_db)
    key = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup(
        tables=["public.workspaces"]).object_key
    verify_server = local_env.prepare_verify_server(local_env.embedded_server_dsn())  # with the roles
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", local_env.airflow_connection(verify_server))
    operator = VerifyBackupOperator(task_id="verify_table", backup_key=key)
    with psycopg.connect(verify_server) as conn:
        before = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'").fetchone()[0]
    assert operator.execute({"ti": None, "params": {}})["tables"] == 1
    with psycopg.connect(verify_server) as conn:  # CREATE/DROP DATABASE ran there
        after = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'").fetchone()[0]
    assert after > before
    monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_VERIFY_DB", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "login": "postgres", "schema": "postgres"}))
    with pytest.raises(psycopg.OperationalError):  # not AirflowFailException: retried like any task
        operator.execute({"ti": None, "params": {}})


def approved_context(approvals, backup: str) -> dict:
    """A task context whose run's ``approve`` gate answered *restore* to ``backup`` (the live gate is tested in
    tests/e2e: here only what the restore does with its answer)."""

    decision = approvals("restore_from_spaces", {"decision": "restore", "request": {"backup": backup}},
                         "coldcopy_restore_approvers")
    return {"ti": FakeTaskInstance(dag_id="restore_from_spaces", task_id="restore", xcoms={"approve": decision}),
            "params": {}}


def test_a_whole_restore_never_half_overwrites_a_populated_database(generated_db, spaces, backup_key,
                                                                   coldcopy_conn, new_database, approvals):
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    coldcopy_conn(generated_db)
    key = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup().object_key
    live = psycopg.conninfo.conninfo_to_dict(generated_db)["dbname"]
    with pytest.raises(AirflowFailException, match="refusing to restore into the live database .* without an approval"):
        RestoreFromSpacesOperator(task_id="restore", backup=key, target_database=live).execute({})
    with pytest.raises(AirflowFailException, match="the approval was for backups/other"):
        RestoreFromSpacesOperator(task_id="restore", backup=key, target_database=live).execute(
            approved_context(approvals, "backups/other.dump.zst.gpg"))
    with pytest.raises(AirflowFailException, match="has [0-9]+ tables: a whole-database restore goes into an empty"):
        RestoreFromSpacesOperator(task_id="restore", backup=key, target_database=live).execute(
            approved_context(approvals, key))
    # The question put to the approvers (the live gate itself: tests/e2e/test_live_approval.py).
    from coldcopy.operators.restore_approval import RestoreApprovalOperator

    gate = RestoreApprovalOperator(task_id="approve", backup="latest", target_database=live)
    assert gate.not_needed({}) is None
    subject, body, facts = gate.describe({})
    assert facts == {"backup": key} and live in subject
    assert f"`{live}`" in body and " MB, " in body and "table(s)" in body and " ago) from " in body, body
    assert "is not the live database" in RestoreApprovalOperator(
        task_id="approve", backup="latest", target_database=f"{live}_copy").not_needed({})
    empty = psycopg.conninfo.conninfo_to_dict(new_database())["dbname"]  # e.g. the live one, lost and recreated
    RestoreFromSpacesOperator(task_id="restore", backup=key, target_database=empty).execute({})
    with psycopg.connect(generated_db) as source, psycopg.connect(local_env.database_dsn(generated_db, empty)) as copy:
        query = "SELECT count(*) FROM workspaces"
        assert copy.execute(query).fetchone()[0] == source.execute(query).fetchone()[0] > 0
