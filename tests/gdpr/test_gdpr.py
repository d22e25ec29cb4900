"""GDPR requests and retention against real PostgreSQL and a real S3 endpoint: exports hold exactly the
subject's rows, erasure leaves nothing (tables, views, restored backups, restored months), retention batches."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg import sql

from coldcopy import manifests
from coldcopy.gdpr import Gdpr, GdprError, personal_data_map, reapply_after_restore
from coldcopy.lock_retries import LockRetryPolicy
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun
from tests.conftest import BACKUP_PASSPHRASE, KEYRING, ROOT, SUBJECT_PEPPER
from tests.conftest import stock_decrypt as decrypt

KEY = KEYRING


def subject_of(dsn: str) -> dict:
    """A lead with messages and events, and its workspace."""
    with psycopg.connect(dsn) as conn:
        lead_id, workspace_id, email = conn.execute("""
            SELECT l.id, l.workspace_id, l.email FROM leads l
            WHERE EXISTS (SELECT 1 FROM email_events e WHERE e.lead_id = l.id)
              AND EXISTS (SELECT 1 FROM email_messages m WHERE m.lead_id = l.id) ORDER BY l.id LIMIT 1""").fetchone()
    return {"lead_id": lead_id, "workspace_id": workspace_id, "email": email}


def request(dsn: str, subject: dict, request_type: str, status: str = "verified", email: str | None = None) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return str(conn.execute(
            "INSERT INTO data_subject_requests (workspace_id, email, request_type, status) VALUES (%s, %s, %s, %s) "
            "RETURNING id", (subject["workspace_id"], email or subject["email"], request_type, status)).fetchone()[0])


def gdpr_on(dsn: str) -> tuple[psycopg.Connection, Gdpr]:
    conn = psycopg.connect(dsn, autocommit=True)
    return conn, Gdpr(conn, keyring=KEY, lock_retry=LockRetryPolicy(attempts=3, lock_timeout_ms=500),
                      passphrase=BACKUP_PASSPHRASE, pepper=SUBJECT_PEPPER)


def month_with_a_lead(conn, manager):
    """The oldest archivable month holding a lead's events, and that lead (id, workspace, address)."""
    for month in manager.archive_candidates():
        found = conn.execute(f"SELECT l.id, l.workspace_id, l.email FROM public.{month.name} e "
                             "JOIN leads l ON l.id = e.lead_id ORDER BY e.id LIMIT 1").fetchone()
        if found:
            return month, found
    raise AssertionError("no archivable month holds a lead's events")


def occurrences(dsn: str, needle: str) -> list[str]:
    """Every table and materialized view column (text, json, uuid…) whose values contain ``needle``."""
    found = []
    with psycopg.connect(dsn) as conn:
        columns = conn.execute("""
            SELECT n.nspname, c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE (c.relkind = 'r' OR (c.relkind = 'm' AND c.relispopulated)) AND a.attnum > 0 AND NOT a.attisdropped
              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
              AND format_type(a.atttypid, NULL) IN ('text', 'character varying', 'jsonb', 'json', 'uuid', 'text[]',
                                                    'uuid[]', 'citext')""").fetchall()
        for schema, table, column in columns:
            hit = conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text LIKE %s)").format(
                sql.Identifier(schema, table), sql.Identifier(column)), (f"%{needle}%",)).fetchone()[0]
            if hit:
                found.append(f"{schema}.{table}.{column}")
    return found


def test_the_catalog_finds_personal_data_including_a_new_table(generated_db):
    conn, gdpr = gdpr_on(generated_db)
    tables = {link.table for link in personal_data_map(conn)}
    assert {"public.leads", "public.email_messages", "public.email_events", "public.campaign_leads",
            "public.consent_records", "public.reply_classifications"} <= tables
    assert "public.users" not in tables
    conn.execute("CREATE TABLE public.lead_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE, note text)")
    assert "public.lead_notes" in {link.table for link in personal_data_map(conn)}
    conn.close()


def test_access_export_holds_exactly_the_subjects_rows_encrypted(generated_db, spaces, backup_key, monkeypatch,
                                                                 caplog):
    from coldcopy.testing.alert_sink import AlertSink

    client, bucket = spaces.client, spaces.name
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    conn.execute("CREATE TABLE public.lead_notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE, note text)")
    conn.execute("INSERT INTO public.lead_notes (workspace_id, lead_id, note) SELECT workspace_id, id, 'called' "
                 "FROM leads WHERE workspace_id = %s AND id <> %s ORDER BY id LIMIT 5",
                 (subject["workspace_id"], subject["lead_id"]))
    conn.execute("INSERT INTO public.lead_notes (workspace_id, lead_id, note) VALUES (%s, %s, 'mine')",
                 (subject["workspace_id"], subject["lead_id"]))
    request_id = request(generated_db, subject, "access")
    monkeypatch.delenv("AIRFLOW_CONN_COLDCOPY_DPO", raising=False)
    with pytest.raises(RuntimeError, match="coldcopy_dpo is not configured"):  # a secret with nowhere to go
        gdpr.handle(request_id, spaces)
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="gdpr/exports/")  # undelivered: deleted
    with AlertSink() as dpo:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_DPO", dpo.airflow_connection())
        result = gdpr.handle(request_id, spaces)
    status, notes = conn.execute("SELECT status, notes FROM data_subject_requests WHERE id = %s",
                                 (request_id,)).fetchone()
    [delivered] = [r["body"] for r in dpo.received]
    url, passphrase = delivered["url"], delivered["passphrase"]
    assert status == "completed" and "valid 7 days" in notes and "delivered to the data protection officer" in notes
    assert passphrase not in notes and url not in notes and passphrase not in json.dumps(result, default=str)
    assert passphrase not in caplog.text  # nor in the task's log
    import httpx

    encrypted = httpx.get(url).content
    assert b'"tables"' not in encrypted  # really encrypted
    document = json.loads(decrypt(encrypted, passphrase))
    tables = document["tables"]
    assert [r["id"] for r in tables["public.leads"]] == [str(subject["lead_id"])]
    assert {r["note"] for r in tables["public.lead_notes"]} == {"mine"}  # the new table, and only the subject's
    expected = {
        "public.email_events": "SELECT count(*) FROM email_events WHERE lead_id = %s",
        "public.email_messages": "SELECT count(*) FROM email_messages WHERE lead_id = %s",
        "public.campaign_leads": "SELECT count(*) FROM campaign_leads WHERE lead_id = %s",
    }
    for table, query in expected.items():
        assert len(tables[table]) == conn.execute(query, (subject["lead_id"],)).fetchone()[0] > 0, table
    for table, rows in tables.items():
        for row in rows:
            assert row.get("workspace_id") in (None, str(subject["workspace_id"])), table
            if "lead_id" in row and table != "public.data_subject_requests":
                assert row["lead_id"] in (None, str(subject["lead_id"])), table
    # exports expire: 7 days after, the object is gone (its link was valid that long)
    from datetime import UTC, datetime, timedelta

    assert gdpr.delete_expired_exports(spaces, now=datetime.now(UTC) + timedelta(days=6)) == []
    assert len(gdpr.delete_expired_exports(spaces, now=datetime.now(UTC) + timedelta(days=8))) == 1
    assert httpx.get(url).status_code == 404
    conn.close()


def test_erasure_leaves_no_trace_suppresses_and_records_without_the_address(generated_db, spaces, backup_key):
    client, bucket = spaces.client, spaces.name
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    refresher_for(conn, "analytics.lead_engagement").run(RefreshRun(run_id="fill"))
    assert occurrences(generated_db, str(subject["lead_id"]))  # the view holds the subject before
    request_id = request(generated_db, subject, "erasure")
    result = gdpr.handle(request_id, spaces)
    assert result["rows"]["public.email_events"] > 0 and "analytics.lead_engagement" in result["views_refreshed"]
    assert occurrences(generated_db, subject["email"]) == []
    assert occurrences(generated_db, str(subject["lead_id"])) == []
    status, completed_at, email, notes = conn.execute(
        "SELECT status, completed_at, email, notes FROM data_subject_requests WHERE id = %s", (request_id,)).fetchone()
    assert status == "completed" and completed_at and email.startswith("hmac:") and notes.startswith("erased ")
    [audit] = conn.execute("SELECT changed_columns FROM gdpr_audit_log WHERE row_id = %s AND action = 'DELETE'",
                           (request_id,)).fetchone()
    assert any(c.startswith("public.email_events=") for c in audit)
    with pytest.raises(psycopg.errors.CheckViolation, match="erased on the data subject's request"):
        conn.execute("INSERT INTO leads (workspace_id, email) VALUES (%s, %s)",
                     (subject["workspace_id"], subject["email"].upper().lower()))
    other_workspace = conn.execute("SELECT id FROM workspaces WHERE id <> %s LIMIT 1",
                                   (subject["workspace_id"],)).fetchone()[0]
    conn.execute("INSERT INTO leads (workspace_id, email) VALUES (%s, %s)", (other_workspace, subject["email"]))
    [ledger_key] = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="gdpr/erasures/")["Contents"]]
    assert subject["email"].encode() not in client.get_object(Bucket=bucket, Key=ledger_key)["Body"].read()
    conn.close()


def test_nothing_found_unknown_types_and_unverified_requests(generated_db, spaces, backup_key):
    subject = {**subject_of(generated_db), "email": "nobody-here@example.org"}
    conn, gdpr = gdpr_on(generated_db)
    for kind in ("access", "erasure"):
        request_id = request(generated_db, subject, kind)
        assert gdpr.handle(request_id, spaces)["note"].startswith("nothing found")
    manual = request(generated_db, subject, "rectification")
    received = request(generated_db, subject, "erasure", status="received")
    assert manual not in gdpr.pending() and received not in gdpr.pending()
    with pytest.raises(GdprError, match="'rectification' is not handled by a job"):
        gdpr.handle(manual, spaces)
    with pytest.raises(GdprError, match="only verified requests are processed"):
        gdpr.handle(received, spaces)
    conn.close()


def test_a_restored_backup_does_not_bring_an_erased_subject_back(generated_db, new_database, spaces, backup_key):
    from coldcopy.backups import BackupRunner

    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    for view in ("analytics.lead_engagement", "analytics.lead_intent_summary"):  # built, as production's are
        refresher_for(conn, view).run(RefreshRun(run_id="fill"))
    runner = BackupRunner(generated_db, spaces, BACKUP_PASSPHRASE, keyring=KEY)
    key = runner.backup().object_key
    gdpr.handle(request(generated_db, subject, "erasure"), spaces)
    conn.close()
    target = new_database()
    runner.restore(key, target)
    assert occurrences(target, str(subject["lead_id"]))  # the backup holds the subject, as backups do
    from coldcopy.operators.restore import RestoreFromSpacesOperator

    done, problems = RestoreFromSpacesOperator.reapply_erasures(runner, runner.manifest(key), target)
    assert len(done) == 1 and problems == []
    assert occurrences(target, subject["email"]) == [] and occurrences(target, str(subject["lead_id"])) == []
    with psycopg.connect(target) as restored_conn, pytest.raises(psycopg.errors.CheckViolation):
        restored_conn.execute("INSERT INTO leads (workspace_id, email) VALUES (%s, %s)",
                              (subject["workspace_id"], subject["email"]))

    by_hand = new_database()  # the stock-tools runbook: pg_restore by hand, then scripts/gdpr_reapply.py
    runner.restore(key, by_hand)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gdpr_reapply.py"), "--dsn", by_hand, "--since",
                    runner.manifest(key)["started_at"]], check=True, capture_output=True, env=os.environ)
    assert occurrences(by_hand, subject["email"]) == [] and occurrences(by_hand, str(subject["lead_id"])) == []


def subjects_of(dsn: str, n: int) -> list[dict]:
    with psycopg.connect(dsn) as conn:
        return [{"lead_id": r[0], "workspace_id": r[1], "email": r[2]} for r in conn.execute("""
            SELECT l.id, l.workspace_id, l.email FROM leads l
            WHERE EXISTS (SELECT 1 FROM email_messages m WHERE m.lead_id = l.id) ORDER BY l.id LIMIT %s""", (n,))]


def test_junk_missing_and_reordered_ledger_entries_are_reported_and_the_valid_ones_still_applied(
        generated_db, new_database, spaces, backup_key):
    from coldcopy.backups import BackupRunner

    client, bucket = spaces.client, spaces.name
    people = subjects_of(generated_db, 3)
    runner = BackupRunner(generated_db, spaces, BACKUP_PASSPHRASE, keyring=KEY)
    key = runner.backup().object_key
    conn, gdpr = gdpr_on(generated_db)
    for person in people:
        gdpr.handle(request(generated_db, person, "erasure"), spaces)
    entries = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="gdpr/erasures/")["Contents"])
    assert entries == [f"gdpr/erasures/{n:012d}.json" for n in (1, 2, 3)]
    client.put_object(Bucket=bucket, Key="gdpr/erasures/junk.json", Body=b"{not json")
    forged = manifests.dump({"seq": 4}, manifests.Keyring.from_secret("an attacker's own secret of 32+ chars"),
                            type="ledger")
    client.put_object(Bucket=bucket, Key="gdpr/erasures/000000000004.json", Body=forged)
    second = client.get_object(Bucket=bucket, Key=entries[1])["Body"].read()
    client.delete_object(Bucket=bucket, Key=entries[1])

    target = new_database()
    runner.restore(key, target)
    done, problems = reapply_after_restore(target, spaces, KEY, None, SUBJECT_PEPPER)
    assert len(done) == 2  # entries 1 and 3: one junk object, one forged and one missing entry stop nothing
    assert any("junk.json: not a signed document" in p for p in problems)
    assert any("unknown key" in p for p in problems)
    assert any("entries 2..2 are missing" in p for p in problems)
    for person in (people[0], people[2]):
        assert occurrences(target, person["email"]) == [] and occurrences(target, str(person["lead_id"])) == []

    # the live database still has entry 2: the cross-check publishes it again and says so
    problems = gdpr.check_ledger(spaces)
    assert "ledger entry 2 was missing from the bucket; published again" in problems
    assert client.get_object(Bucket=bucket, Key=entries[1])["Body"].read() == second

    # reordered: entry 3's object put under number 1 is refused, and the chain break is reported
    third = client.get_object(Bucket=bucket, Key=entries[2])["Body"].read()
    client.put_object(Bucket=bucket, Key=entries[0], Body=third)
    ledger = gdpr.ledger_from_bucket(spaces)
    assert [e["seq"] for e in ledger.entries] == [2, 3]
    assert any("stored under another number" in p for p in ledger.problems)
    assert any("entries 1..1 are missing" in p for p in ledger.problems)
    conn.close()


def test_a_zombie_task_cannot_handle_a_request_being_handled(generated_db, spaces, backup_key):
    subject = subject_of(generated_db)
    request_id = request(generated_db, subject, "erasure")
    zombie_conn, zombie = gdpr_on(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    with zombie.requests._claim(request_id):  # the first try, still running somewhere
        with pytest.raises(GdprError, match="another session is handling it"):
            gdpr.handle(request_id, spaces)
        assert conn.execute("SELECT status FROM data_subject_requests WHERE id = %s",
                            (request_id,)).fetchone()[0] == "in_progress"
    zombie_conn.close()  # gone: its retry goes ahead
    assert gdpr.handle(request_id, spaces)["type"] == "erasure"
    conn.close()


def test_an_erasure_racing_a_partition_restore_leaves_no_row_of_the_subject(generated_db, spaces, backup_key):
    """The ledger entry is committed before the first delete: a month restored between the two already
    leaves the subject's rows out (before, the entry came after the deletes and the month brought them back)."""
    from coldcopy.partitions import PartitionManager

    conn, gdpr = gdpr_on(generated_db)
    other = psycopg.connect(generated_db, autocommit=True)
    manager = PartitionManager(other, keyring=KEY, passphrase=BACKUP_PASSPHRASE)
    month, (lead_id, workspace_id, email) = month_with_a_lead(conn, manager)
    manager.archive(month, spaces)
    other.execute(f"DROP TABLE public.{month.name}")
    erase_rows = gdpr.erasure.erase_rows

    def restore_in_between(*args, **kwargs):
        manager.restore(month.range_start, spaces)  # another task, between intent and deletes
        return erase_rows(*args, **kwargs)

    gdpr.erasure.erase_rows = restore_in_between
    gdpr.handle(request(generated_db, {"workspace_id": workspace_id, "email": email}, "erasure"), spaces)
    assert conn.execute(f"SELECT count(*) FROM public.{month.name} WHERE lead_id = %s", (lead_id,)).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM email_events WHERE lead_id = %s", (lead_id,)).fetchone()[0] == 0
    other.close()
    conn.close()


def test_a_restored_month_leaves_out_erased_subjects(generated_db, spaces, backup_key):
    from coldcopy.partitions import PartitionManager

    conn, gdpr = gdpr_on(generated_db)
    manager = PartitionManager(conn, keyring=KEY, passphrase=BACKUP_PASSPHRASE)
    oldest, (lead_id, workspace_id, email) = month_with_a_lead(conn, manager)
    before = conn.execute(f"SELECT count(*) FROM public.{oldest.name}").fetchone()[0]
    mine = conn.execute(f"SELECT count(*) FROM public.{oldest.name} WHERE lead_id = %s", (lead_id,)).fetchone()[0]
    manager.archive(oldest, spaces)
    conn.execute(f"DROP TABLE public.{oldest.name}")
    gdpr.handle(request(generated_db, {"workspace_id": workspace_id, "email": email}, "erasure"), spaces)
    manager.restore(oldest.range_start, spaces)
    assert conn.execute(f"SELECT count(*) FROM public.{oldest.name}").fetchone()[0] == before - mine
    assert conn.execute(f"SELECT count(*) FROM public.{oldest.name} WHERE lead_id = %s", (lead_id,)).fetchone()[0] == 0
    conn.close()


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
    import gzip

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


def test_deadline_warnings_once_per_request_per_day(generated_db, backup_key):
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    soon = request(generated_db, subject, "erasure", status="received")
    conn.execute("UPDATE data_subject_requests SET due_at = now() + interval '2 days' WHERE id = %s", (soon,))
    request(generated_db, subject, "access", status="received")  # due in 30 days
    assert [str(r["id"]) for r in gdpr.due_soon()] == [soon]
    assert gdpr.due_soon() == []
    conn.close()


def test_erasure_reaches_detached_months_cascades_and_payloads(generated_db, spaces, backup_key, dpo):
    """Every copy inside the database: a month detached for its grace period, tables reached only through
    ON DELETE CASCADE (exported too), and the registry's address and payload columns."""
    from datetime import timedelta

    from coldcopy.partitions import PartitionManager

    conn, gdpr = gdpr_on(generated_db)
    manager = PartitionManager(conn, keyring=KEY, passphrase=BACKUP_PASSPHRASE)
    month, (lead_id, workspace_id, email) = month_with_a_lead(conn, manager)
    subject = {"lead_id": lead_id, "workspace_id": workspace_id, "email": email}
    manager.archive(month, spaces)  # exported, verified, detached: a plain table for its grace period
    assert conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                        (month.name,)).fetchone()[0] == "detached"
    assert occurrences(generated_db, str(lead_id))
    twitter = conn.execute("INSERT INTO twitter_profiles (workspace_id, lead_id, handle) VALUES (%s, %s, 'subj') "
                           "RETURNING id", (workspace_id, lead_id)).fetchone()[0]
    conn.execute("INSERT INTO twitter_engagements (workspace_id, profile_id, kind, content) "
                 "VALUES (%s, %s, 'reply', 'a reply only the subject wrote')", (workspace_id, twitter))
    linkedin = conn.execute("INSERT INTO linkedin_profiles (workspace_id, lead_id, profile_url) "
                            "VALUES (%s, %s, 'https://linkedin.example/subj') RETURNING id",
                            (workspace_id, lead_id)).fetchone()[0]
    conn.execute("INSERT INTO linkedin_messages (workspace_id, profile_id, body) "
                 "VALUES (%s, %s, 'a message to the subject')", (workspace_id, linkedin))
    conn.execute("INSERT INTO enrichment_cache (workspace_id, lookup_key, payload) VALUES (%s, %s, "
                 "'{\"title\": \"CTO\"}')", (workspace_id, email.upper()))
    conn.execute("INSERT INTO intent_signals (workspace_id, signal_type, payload) VALUES (%s, 'website_visit', "
                 "jsonb_build_object('visitor', jsonb_build_object('email', %s::text)))", (workspace_id, email))

    gdpr.handle(request(generated_db, subject, "access"), spaces)  # Art. 15: the cascade-only rows too
    [delivered] = [r["body"] for r in dpo.received]
    import httpx

    tables = json.loads(decrypt(httpx.get(delivered["url"]).content, delivered["passphrase"]))["tables"]
    assert [r["content"] for r in tables["public.twitter_engagements"]] == ["a reply only the subject wrote"]
    assert [r["body"] for r in tables["public.linkedin_messages"]] == ["a message to the subject"]
    assert len(tables["public.enrichment_cache"]) == 1 and len(tables["public.intent_signals"]) >= 1
    assert len(tables[f"public.{month.name}"]) > 0

    result = gdpr.handle(request(generated_db, subject, "erasure"), spaces)
    assert result["rows"][f"public.{month.name}"] > 0 and result["rows"]["public.twitter_engagements"] == 1
    assert occurrences(generated_db, email) == [] and occurrences(generated_db, str(lead_id)) == []
    for text in ("a reply only the subject wrote", "a message to the subject"):
        assert occurrences(generated_db, text) == []
    assert occurrences(generated_db, email.upper()) == []
    # the detached month's bookkeeping followed: it is still dropped after its grace period
    assert manager.drop_detached(spaces, grace=timedelta(0)) == [month.name]
    conn.close()


def test_a_new_personal_column_outside_the_registry_is_found(generated_db):
    from coldcopy.gdpr import unregistered_columns

    conn, _ = gdpr_on(generated_db)
    assert unregistered_columns(conn) == []
    conn.execute("CREATE TABLE public.lead_contacts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                 "workspace_id uuid NOT NULL, contact_email text, extra jsonb, email text)")
    assert unregistered_columns(conn) == ["public.lead_contacts.contact_email", "public.lead_contacts.extra"]
    conn.close()


def test_subject_keys_are_keyed_and_old_unkeyed_entries_are_migrated(generated_db, spaces, backup_key):
    """Who was erased cannot be learnt by hashing candidate addresses: the suppression list and the ledger keep
    an HMAC under a pepper that is not in the tenant tables or the bucket. Entries made before are migrated."""
    import hashlib

    from coldcopy.gdpr import Gdpr

    client, bucket = spaces.client, spaces.name
    subject, other = subjects_of(generated_db, 2)
    with psycopg.connect(generated_db, autocommit=True) as conn:  # an entry as the unkeyed scheme wrote it
        legacy = hashlib.sha256(f"{other['workspace_id']}:{other['email'].lower()}".encode()).hexdigest()
        conn.execute("INSERT INTO suppression_list (workspace_id, email, reason) VALUES (%s, %s, 'gdpr_erasure')",
                     (other["workspace_id"], f"sha256:{legacy}"))
    conn, gdpr = gdpr_on(generated_db)
    gdpr.handle(request(generated_db, subject, "erasure"), spaces)
    guess = hashlib.sha256(f"{subject['workspace_id']}:{subject['email'].lower()}".encode()).hexdigest()
    stored = [e for (e,) in conn.execute("SELECT email FROM suppression_list WHERE reason = 'gdpr_erasure'")]
    assert stored and all(e.startswith("hmac:") for e in stored)
    assert not any(guess in e for e in stored) and not any(legacy in e for e in stored)  # the guess finds nothing
    ledger = client.get_object(Bucket=bucket, Key="gdpr/erasures/000000000001.json")["Body"].read().decode()
    assert guess not in ledger
    assert conn.execute("SELECT has_table_privilege('authenticated', 'coldcopy_ops.subject_key', 'SELECT')"
                        ).fetchone()[0] is False
    gdpr.ensure_refuse_trigger()
    for person in (subject, other):  # the migrated entry still refuses its address
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO leads (workspace_id, email) VALUES (%s, %s)",
                         (person["workspace_id"], person["email"]))
    with pytest.raises(GdprError, match="another pepper"):
        Gdpr(conn, keyring=KEY, pepper="another pepper of thirty-two characters or more")
    conn.close()


def test_archived_months_are_rewritten_without_erased_people_once_a_day(generated_db, spaces, backup_key):
    """The bucket's copies: each archived month holding an erased person is rewritten (others' records byte
    for byte), bound and signed again, at most once a day; a restore of it lacks the person and verifies."""
    from datetime import timedelta

    from coldcopy.partitions import PartitionManager
    from coldcopy.partitions.scrubber import ArchiveScrubber

    client, bucket = spaces.client, spaces.name
    conn, gdpr = gdpr_on(generated_db)
    manager = PartitionManager(conn, keyring=KEY, passphrase=BACKUP_PASSPHRASE)
    candidates = manager.archive_candidates()
    for months in zip(candidates, candidates[1:], strict=False):  # two months with events of the same lead
        found = conn.execute(
            f"SELECT l.id, l.workspace_id, l.email FROM public.{months[0].name} a JOIN public.{months[1].name} b "
            "ON a.lead_id = b.lead_id JOIN leads l ON l.id = a.lead_id ORDER BY l.id LIMIT 1").fetchone()
        if found:
            break
    lead_id, workspace_id, email = found
    counts = {m.name: conn.execute(f"SELECT count(*), count(*) FILTER (WHERE lead_id = %s) FROM public.{m.name}",
                                   (lead_id,)).fetchone() for m in months}
    for month in months:
        manager.archive(month, spaces)
    manager.drop_detached(spaces, grace=timedelta(0))  # both dropped: only the bucket holds them
    old_keys = {m.name: m.object_key for m in months}
    gdpr.handle(request(generated_db, {"workspace_id": workspace_id, "email": email}, "erasure"), spaces)

    done = ArchiveScrubber(manager).run(spaces)
    assert {(d.partition, d.removed, d.rows) for d in done} == {
        (m.name, counts[m.name][1], counts[m.name][0] - counts[m.name][1]) for m in months}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="archive/")["Contents"]}
    assert not set(old_keys.values()) & keys  # the old objects are gone
    for d in done:
        body = client.get_object(Bucket=bucket, Key=d.object_key)["Body"].read()
        csv_bytes = gzip.decompress(decrypt(body, BACKUP_PASSPHRASE))
        assert str(lead_id).encode() not in csv_bytes and csv_bytes.count(b"\n") >= d.rows + 1
    assert ArchiveScrubber(manager).run(spaces) == []  # nothing due again
    gdpr.handle(request(generated_db, subjects_of(generated_db, 1)[0], "erasure"), spaces)
    assert ArchiveScrubber(manager).run(spaces) == []  # a new erasure waits for tomorrow's run

    manager.restore(months[0].range_start, spaces)  # the rewritten archive verifies and restores
    assert conn.execute(f"SELECT count(*) FROM public.{months[0].name}").fetchone()[0] == \
        counts[months[0].name][0] - counts[months[0].name][1]
    assert occurrences(generated_db, str(lead_id)) == []
    conn.close()
