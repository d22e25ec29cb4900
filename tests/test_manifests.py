"""Manifests read back from the bucket are authenticated, and no name in them reaches SQL unchecked."""

from __future__ import annotations

import json

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.backups import BackupError, BackupRunner
from coldcopy.partitions import ArchiveError, PartitionManager

KEY = manifests.Keyring.from_secret("test manifest signing secret, 32+ chars")
OTHER = manifests.Keyring.from_secret("another manifest signing secret, 32+ chars")


def document(**changes) -> dict:
    """A complete retention-archive manifest (the smallest signed document type)."""
    return {"object_key": "gdpr/retention/x.jsonl.gz.gpg", "byte_size": 10, "sha256": "0" * 64, "rows": 10,
            "table": "public.intent_signals", "policy_id": "p", "workspace_id": "w", "format": "jsonl", **changes}


def test_sign_and_load_round_trip_and_every_kind_of_tampering_is_refused():
    manifest = document()
    raw = manifests.dump(manifest, KEY, type="retention_archive")
    assert manifests.load(raw, KEY, where="m", type="retention_archive") == {**manifest, "type": "retention_archive"}
    assert json.loads(raw)["signature"]["key_id"] == KEY.key_id
    edited = json.loads(raw)
    edited["rows"] = 11
    tables_added = json.loads(raw)
    tables_added["table"] = "public.gdpr_audit_log"
    retyped = json.loads(raw)
    retyped["type"] = "backup"
    unsigned = dict(manifest)
    legacy = {**manifest, "signature": {"algorithm": "HMAC-SHA256", "value": "0" * 64}}  # v1: no key id
    for bad, why in ((json.dumps(edited).encode(), "does not verify"),
                     (json.dumps(tables_added).encode(), "does not verify"),
                     (json.dumps(retyped).encode(), "does not verify"),
                     (json.dumps(unsigned).encode(), "not a signed document"),
                     (json.dumps(legacy).encode(), "not a signed document"),
                     (manifests.dump(manifest, OTHER, type="retention_archive"), "unknown key"),
                     (manifests.dump(manifest, KEY, type="ledger"), "a 'ledger' document where a 'retention_archive'"),
                     # validly signed, but not of the type's shape: an extra field, a wrong type, a missing one
                     (manifests.dump(document(extra="x"), KEY, type="retention_archive"), "wrong shape .extra"),
                     (manifests.dump(document(rows="ten"), KEY, type="retention_archive"), "wrong shape .rows"),
                     (manifests.dump({"rows": 10}, KEY, type="retention_archive"), "wrong shape"),
                     (b"not json", "not a signed document")):
        with pytest.raises(manifests.ManifestRejected, match=why):
            manifests.load(bad, KEY, where="m", type="retention_archive")


def test_keys_rotate_old_documents_still_verify_and_a_weak_secret_is_refused():
    old = manifests.dump(document(rows=1), KEY, type="retention_archive")
    rotated = manifests.Keyring.from_secret("the next manifest signing secret, 32+ chars",
                                            retired=["test manifest signing secret, 32+ chars"])
    assert manifests.load(old, rotated, where="m", type="retention_archive")["rows"] == 1
    new = manifests.dump(document(rows=2), rotated, type="retention_archive")
    with pytest.raises(manifests.ManifestRejected, match="unknown key"):
        manifests.load(new, KEY, where="m", type="retention_archive")  # the old ring does not know the new key
    with pytest.raises(ValueError, match="at least 32 characters"):
        manifests.Keyring.from_secret("hunter2")


def replace_manifest(bucket, key: str, edit) -> None:
    document = json.loads(bucket.get(key))
    edit(document)
    bucket.put(key, json.dumps(document).encode())


def test_an_edited_backup_manifest_is_refused_by_verify_restore_resolve_and_retention(
        generated_db, spaces, backup_key, admin_dsn, new_database):
    client, bucket = spaces.client, spaces.name
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEY)
    key = runner.backup(tables=["public.workspaces"]).object_key
    manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
    replace_manifest(spaces, manifest_key, lambda m: m["row_counts"].update({"public.leads": 0}))
    with pytest.raises(BackupError, match="signature does not verify"):
        runner.verify(key, admin_dsn)
    with pytest.raises(BackupError, match="signature does not verify"):
        runner.restore(key, new_database(), tables=["public.workspaces"])
    with pytest.raises(BackupError, match="signature does not verify"):
        runner.manifest(key)
    with pytest.raises(BackupError, match="unknown key"):
        BackupRunner(generated_db, spaces, backup_key, keyring=OTHER).manifest(key)
    from datetime import UTC, datetime, timedelta

    # never deletes what it cannot trust, and one bad manifest does not stop the run: skipped and reported
    assert runner.apply_retention(dry_run=False, now=datetime.now(UTC) + timedelta(days=400)) == []
    assert len(runner.skipped) == 1 and "signature does not verify" in runner.skipped[0]
    assert client.head_object(Bucket=bucket, Key=key)


def test_a_planted_table_name_is_refused_before_any_sql_runs(generated_db, spaces, backup_key, admin_dsn):
    """Even with a valid signature (a stolen key), a name in a manifest never becomes SQL text."""
    client, bucket = spaces.client, spaces.name
    runner = BackupRunner(generated_db, spaces, backup_key, keyring=KEY)
    key = runner.backup().object_key
    manifest_key = key.removesuffix(".dump.zst.gpg") + ".manifest.json"
    document = runner.manifest(key)
    document.pop("type")
    document["row_counts"]["public.workspaces; DROP TABLE public.leads; --"] = 1
    client.put_object(Bucket=bucket, Key=manifest_key, Body=manifests.dump(document, runner.keyring, type="backup"))
    with pytest.raises(BackupError, match="not a relation name: 'public.workspaces; DROP TABLE public.leads; --'"):
        runner.verify(key, admin_dsn)
    with psycopg.connect(generated_db) as conn:
        assert conn.execute("SELECT to_regclass('public.leads') IS NOT NULL").fetchone()[0]
    with pytest.raises(BackupError, match="not a relation name"):
        runner.backup(tables=["public.leads; DROP TABLE public.leads"])


def test_an_edited_archive_manifest_is_refused_by_verify_restore_and_drop(generated_db, spaces):
    from datetime import timedelta

    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = PartitionManager(conn, keyring=KEY, passphrase="test passphrase")
        month = rotation.archive_candidates()[-1]
        rotation.archive(month, spaces)
        replace_manifest(spaces, month.manifest_key, lambda m: m.update(rows=m["rows"] + 1))
        with pytest.raises(ArchiveError, match="signature does not verify"):
            rotation.drop_detached(spaces, grace=timedelta(0))
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{month.name}",)).fetchone()[0]
        conn.execute(f"DROP TABLE public.{month.name}")
        with pytest.raises(ArchiveError, match="signature does not verify"):
            rotation.restore(month.range_start, spaces)
        other = rotation.archive_candidates()[-1]
        rotation.export(other, spaces)
        with pytest.raises(ArchiveError, match="unknown key"):
            PartitionManager(conn, keyring=OTHER, passphrase="test passphrase").verify(other, spaces)


def test_a_view_name_with_a_quote_is_a_clear_error(generated_db):
    from coldcopy.refresh.views import MaterializedViewRefresher

    with psycopg.connect(generated_db, autocommit=True) as conn:
        for name in ('analytics.campaign_analytics"; DROP TABLE public.leads; --', "analytics.nope"):
            with pytest.raises(ValueError, match="no such materialized view"):
                MaterializedViewRefresher(conn, name)
        assert conn.execute("SELECT to_regclass('public.leads') IS NOT NULL").fetchone()[0]
