"""Retention policies (coldcopy.gdpr.retention): per workspace, in batches, archive and anonymize."""

from __future__ import annotations

import gzip
import threading
import time

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.gdpr import GdprError
from tests.conftest import BACKUP_PASSPHRASE
from tests.conftest import stock_decrypt as decrypt
from tests.support.gdpr import KEY, gdpr_on


def test_retention_per_workspace_in_batches_without_making_the_application_wait(generated_db, spaces, backup_key):
    conn, gdpr = gdpr_on(generated_db)
    gdpr.batch = 500
    first, second = [r for (r,) in conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 2")]
    for workspace, age in ((first, "90 days"), (second, "300 days")):
        conn.execute("INSERT INTO data_retention_policies (workspace_id, table_name, retain_for, action) "
                     "VALUES (%s, 'email_events', %s, 'delete')", (workspace, age))

    def count(workspace, age):
        return conn.execute("SELECT count(*) FROM email_events WHERE workspace_id = %s "
                            "AND occurred_at < now() - %s::interval", (workspace, age)).fetchone()[0]

    expired = {first: count(first, "90 days"), second: count(second, "300 days")}
    kept = {first: count(first, "-1 day") - expired[first], second: count(second, "-1 day") - expired[second]}
    assert all(expired.values()) and all(kept.values())
    stop, waits = threading.Event(), []

    def application() -> None:
        with psycopg.connect(generated_db, autocommit=True) as app:
            while not stop.is_set():
                began = time.perf_counter()
                app.execute("INSERT INTO email_events (workspace_id, event_type) VALUES (%s, 'sent')", (first,))
                waits.append(time.perf_counter() - began)

    writer = threading.Thread(target=application)
    writer.start()
    try:
        results = {}
        for (policy_id,) in conn.execute("SELECT id FROM data_retention_policies ORDER BY workspace_id").fetchall():
            policy = gdpr.policy(policy_id)
            results[policy["workspace_id"]] = gdpr.apply_retention(policy, spaces)
            gdpr.log_retention(policy, "done", **results[policy["workspace_id"]])
    finally:
        stop.set()
        writer.join()
    assert results[first]["rows"] == expired[first] and results[first]["batches"] >= expired[first] // 500
    assert count(first, "90 days") == 0 and count(second, "300 days") == 0
    assert count(first, "-1 day") >= kept[first] and count(second, "-1 day") == kept[second]
    assert max(waits) < 0.5  # each batch is short; the writer never queues behind a long delete
    assert conn.execute("SELECT count(*) FROM data_retention_policies WHERE last_applied_at IS NULL").fetchone()[0] == 0
    conn.close()


def test_retention_archive_and_anonymize_and_bad_policies(generated_db, spaces, backup_key):
    client, bucket = spaces.client, spaces.name
    conn, gdpr = gdpr_on(generated_db)
    workspace = conn.execute("SELECT id FROM workspaces ORDER BY id LIMIT 1").fetchone()[0]
    old = conn.execute("SELECT count(*) FROM leads WHERE workspace_id = %s AND created_at < now() - interval '30 days'",
                       (workspace,)).fetchone()[0]
    policies = {}
    for table, action in (("leads", "anonymize"), ("intent_signals", "archive"), ("no_such_table", "delete"),
                          ("warmup_schedules; DROP TABLE leads", "delete"), ("workspaces", "delete"),
                          ("gdpr_audit_log", "delete"), ("consent_records", "archive"),
                          ("coldcopy_ops.erasure_ledger", "delete")):
        policies[table] = conn.execute(
            "INSERT INTO data_retention_policies (workspace_id, table_name, retain_for, action) "
            "VALUES (%s, %s, %s, %s) RETURNING id", (workspace, table, "30 days", action)).fetchone()[0]
    anonymized = gdpr.apply_retention(gdpr.policy(policies["leads"]), spaces)
    assert anonymized["rows"] == old > 0
    assert conn.execute("SELECT count(*) FROM leads WHERE workspace_id = %s "
                        "AND created_at < now() - interval '30 days' "
                        "AND (email NOT LIKE 'hmac:%%' OR first_name IS NOT NULL)", (workspace,)).fetchone()[0] == 0
    assert gdpr.apply_retention(gdpr.policy(policies["leads"]), spaces)["rows"] == 0  # already done
    conn.execute("INSERT INTO intent_signals (workspace_id, signal_type, payload, created_at) "
                 "SELECT %s, 'news', jsonb_build_object('visitor', 'v' || g || '@example.com'), "
                 "now() - interval '60 days' FROM generate_series(1, 25) g", (workspace,))
    archived = gdpr.apply_retention(gdpr.policy(policies["intent_signals"]), spaces)
    assert archived["rows"] >= 25
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="gdpr/retention/")["Contents"]]
    objects = [k for k in keys if k.endswith(".jsonl.gz.gpg")]
    assert len(keys) == 2 * len(objects)  # each with its signed manifest

    stored = 0
    for key in objects:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert b"example.com" not in body and not body.startswith(b"\x1f\x8b")  # encrypted, not bare gzip
        stored += len(gzip.decompress(decrypt(body, BACKUP_PASSPHRASE)).splitlines())  # stock gpg | gunzip
        manifests.load(client.get_object(Bucket=bucket, Key=key.removesuffix(".jsonl.gz.gpg") + ".manifest.json")
                       ["Body"].read(), KEY, where=key, type="retention_archive")
    assert stored == archived["rows"]
    for bad, reason in (("no_such_table", "no r/p relation"), ("warmup_schedules; DROP TABLE leads", "not a relation"),
                        ("workspaces", "not a table retention may touch"),
                        ("gdpr_audit_log", "not a table retention may touch"),
                        ("consent_records", "not a table retention may touch"),
                        ("coldcopy_ops.erasure_ledger", "not a table retention may touch")):
        with pytest.raises(GdprError, match=reason):
            gdpr.apply_retention(gdpr.policy(policies[bad]), spaces)
    assert conn.execute("SELECT count(*) FROM gdpr_audit_log WHERE workspace_id = %s", (workspace,)).fetchone()[0]
    assert conn.execute("SELECT to_regclass('public.leads') IS NOT NULL").fetchone()[0]
    conn.close()
