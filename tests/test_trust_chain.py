"""Attacks on the bucket by someone who can write it but holds no key (issue 19): every object read back is
bound to its signed manifest before a byte of it is used, and a restore is handed over only when clean."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.backups import BackupError, BackupRunner
from coldcopy.pg_tools import pg_program
from coldcopy.refresh.erasures import Dashboards
from coldcopy.testing import local_env
from tests.conftest import KEYRING, FakeTaskInstance


def tables_of(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {t for (t,) in conn.execute(
            "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")}


def attacker_dump(admin_dsn: str, new_database, tmp_path) -> bytes:
    """The attacker's own pg_dump (a table ``pwned``), zstd'd and wrapped in a plain OpenPGP literal packet
    (``gpg --store``), which ``gpg --decrypt`` passes through with exit 0."""
    source = new_database()
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.pwned (note text)")
        conn.execute("INSERT INTO public.pwned VALUES ('attacker was here')")
    dump = subprocess.run([pg_program("pg_dump", 15), "-Fc", "--dbname", source], check=True,
                          capture_output=True).stdout
    (tmp_path / "evil.zst").write_bytes(subprocess.run(["zstd", "-q", "-c"], input=dump, check=True,
                                                       capture_output=True).stdout)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--store", "-o", str(tmp_path / "evil.gpg"),
                    str(tmp_path / "evil.zst")], check=True, capture_output=True)
    literal = (tmp_path / "evil.gpg").read_bytes()
    plain = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--decrypt"], input=literal,
                           capture_output=True)
    assert plain.returncode == 0 and plain.stdout.startswith(b"\x28\xb5\x2f\xfd")  # the pitfall: exit 0, zstd out
    return literal


@pytest.fixture
def runner(generated_db, spaces, backup_key) -> BackupRunner:
    return BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING)


def test_a_plain_literal_packet_over_a_backup_is_never_restored(runner, spaces, admin_dsn, new_database, tmp_path):
    client, bucket = spaces.client, spaces.name
    result = runner.backup(tables=["public.workspaces"])
    literal = attacker_dump(admin_dsn, new_database, tmp_path)
    client.put_object(Bucket=bucket, Key=result.object_key, Body=literal)
    target = new_database()
    with pytest.raises(BackupError, match="does not match its signed manifest"):
        runner.restore(result.object_key, target)
    assert tables_of(target) == set()

    # Second line, should the signing key leak: a *validly signed* manifest describing the literal packet.
    # gpg's status says it was never decrypted, and not one byte reaches pg_restore.
    import hashlib

    forged = {**result.manifest, "byte_size": len(literal), "sha256": hashlib.sha256(literal).hexdigest()}
    forged.pop("type", None)
    manifest_key = result.object_key.removesuffix(".dump.zst.gpg") + ".manifest.json"
    client.put_object(Bucket=bucket, Key=manifest_key, Body=manifests.dump(forged, KEYRING, type="backup"))
    with pytest.raises(BackupError, match="not symmetrically encrypted.*nothing was restored"):
        runner.restore(result.object_key, target)
    assert tables_of(target) == set()


def test_an_older_genuine_backup_copied_over_a_newer_key_is_refused(runner, spaces, generated_db, new_database):
    client, bucket = spaces.client, spaces.name
    older = runner.backup(tables=["public.workspaces"])
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE public.workspaces SET name = name || ' (renamed)'")
    from datetime import UTC, datetime, timedelta

    newer = runner.backup(tables=["public.workspaces"], now=datetime.now(UTC) + timedelta(minutes=1))
    body = client.get_object(Bucket=bucket, Key=older.object_key)["Body"].read()
    client.put_object(Bucket=bucket, Key=newer.object_key, Body=body)  # the object alone
    target = new_database()
    with pytest.raises(BackupError, match="does not match its signed manifest"):
        runner.restore(newer.object_key, target)
    # the object and its genuine manifest together: the manifest names the other key
    old_manifest = client.get_object(Bucket=bucket, Key=older.object_key.replace(".dump.zst.gpg", ".manifest.json"))
    client.put_object(Bucket=bucket, Key=newer.object_key.replace(".dump.zst.gpg", ".manifest.json"),
                      Body=old_manifest["Body"].read())
    with pytest.raises(BackupError, match="describes .* not"):
        runner.restore(newer.object_key, target)
    assert tables_of(target) == set()


def test_resolve_skips_a_bad_manifest_and_an_orphan_object_is_deleted(runner, spaces):
    from datetime import UTC, datetime, timedelta

    client, bucket = spaces.client, spaces.name
    good = runner.backup()
    bad = runner.backup(now=datetime.now(UTC) + timedelta(minutes=1))
    client.put_object(Bucket=bucket, Key=bad.object_key.replace(".dump.zst.gpg", ".manifest.json"), Body=b"junk")
    key, manifest = runner.resolve("latest")
    assert key == good.object_key and manifest["object_key"] == key
    assert len(runner.skipped) == 1 and "not a signed document" in runner.skipped[0]
    client.delete_object(Bucket=bucket, Key=bad.object_key.replace(".dump.zst.gpg", ".manifest.json"))
    assert runner.orphans() == []  # younger than ORPHAN_AFTER: may be a backup still writing its manifest
    assert runner.apply_retention(dry_run=False, now=datetime.now(UTC) + timedelta(hours=7)) == [bad.object_key]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert bad.object_key not in keys and good.object_key in keys


def test_a_failed_restore_leaves_no_database_and_a_clean_one_is_handed_over(
        generated_db, spaces, backup_key, coldcopy_conn, admin_dsn):
    from airflow.sdk.exceptions import AirflowFailException

    from coldcopy.operators.restore import RestoreFromSpacesOperator

    client, bucket = spaces.client, spaces.name
    coldcopy_conn(generated_db)
    result = BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup()
    target = f"cc_restored_{result.object_key[-24:-14].lower()}"

    def databases() -> set[str]:
        with psycopg.connect(admin_dsn) as conn:
            return {d for (d,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                               (f"{target}%",))}

    body = bytearray(client.get_object(Bucket=bucket, Key=result.object_key)["Body"].read())
    body[-100] ^= 1
    client.put_object(Bucket=bucket, Key=result.object_key, Body=bytes(body))
    with pytest.raises(AirflowFailException, match="does not match its signed manifest"):
        RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target).execute({})
    assert databases() == set()  # the quarantine was dropped; nothing was handed over
    body[-100] ^= 1
    client.put_object(Bucket=bucket, Key=result.object_key, Body=bytes(body))

    try:  # the genuine object: restored into the quarantine, then renamed; no quarantine left behind
        done = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target).execute({})
        assert done["object_key"] == result.object_key and databases() == {target}
        assert len(tables_of(local_env.database_dsn(admin_dsn, target))) > 60
    finally:
        local_env.drop_database(admin_dsn, target)


def test_a_restore_with_a_junk_ledger_object_applies_the_valid_erasures_and_alerts(
        generated_db, spaces, backup_key, coldcopy_conn, admin_dsn, monkeypatch, caplog):

    from coldcopy.gdpr import Gdpr
    from coldcopy.operators.restore import RestoreFromSpacesOperator
    from coldcopy.testing.alert_sink import AlertSink
    from tests.conftest import SUBJECT_PEPPER

    client, bucket = spaces.client, spaces.name
    coldcopy_conn(generated_db)
    BackupRunner(generated_db, spaces, backup_key, keyring=KEYRING).backup()
    with psycopg.connect(generated_db, autocommit=True) as conn:
        lead_id, workspace_id, email = conn.execute(
            "SELECT id, workspace_id, email FROM leads ORDER BY id LIMIT 1").fetchone()
        request_id = conn.execute("INSERT INTO data_subject_requests (workspace_id, email, request_type, status) "
                                  "VALUES (%s, %s, 'erasure', 'verified') RETURNING id",
                                  (workspace_id, email)).fetchone()[0]
        Gdpr(conn, dashboards=Dashboards, keyring=KEYRING, pepper=SUBJECT_PEPPER).handle(str(request_id), spaces)
    client.put_object(Bucket=bucket, Key="gdpr/erasures/junk.json", Body=b"junk")  # the restore used to stop here
    target = f"cc_restored_{request_id.hex[:8]}"
    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", sink.airflow_connection())
        ti = FakeTaskInstance(dag_id="restore_from_spaces", run_id="r", task_id="restore")
        try:
            done = RestoreFromSpacesOperator(task_id="restore", backup="latest", target_database=target).execute(
                {"ti": ti})
            assert done["erasures_reapplied"] == 1
            restored = local_env.database_dsn(admin_dsn, target)
            with psycopg.connect(restored) as conn:
                assert conn.execute("SELECT count(*) FROM leads WHERE id = %s", (lead_id,)).fetchone()[0] == 0
        finally:
            local_env.drop_database(admin_dsn, target)
        [alert] = sink.texts()
        assert "erasure ledger: 1 problem(s)" in alert and "junk.json" in alert
    assert email not in caplog.text
