"""Retention archives cut short (issue 45's campaign found it): a batch killed, or failing, after its object and
manifest were written and before its rows' delete committed left that archive in the bucket, and the next run
archived the same rows again — two copies of each row. Worse, a batch's key was its run's second and its number:
a rerun within the same second wrote its first batches over the killed run's, replacing an archive whose rows
were already deleted (100 rows lost in the test below, on the old code)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import psycopg

from coldcopy import manifests
from coldcopy.crypto import gpg_open
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
from tests.support.gdpr import gdpr_on

KILLED = """
import os, psycopg
from coldcopy.gdpr import Gdpr
from coldcopy.object_store import Bucket
from coldcopy.refresh.erasures import Dashboards
from tests.conftest import BACKUP_PASSPHRASE, KEYRING
with psycopg.connect(os.environ["DSN"], autocommit=True) as conn:
    gdpr = Gdpr(conn, dashboards=Dashboards, keyring=KEYRING, passphrase=BACKUP_PASSPHRASE, batch=100)
    gdpr.apply_retention(gdpr.policy(os.environ["POLICY"]), Bucket.from_connection())
"""


def _archived(spaces) -> int:
    keys = spaces.list_keys("gdpr/retention/")
    return sum(manifests.load(spaces.get(k), KEYRING, where=k, type="retention_archive")["rows"]
               for k in keys if k.endswith(".manifest.json"))


def _archived_rows(spaces) -> list[str]:
    """Every row in the bucket's retention archives (their ids), as many times as it is there."""
    found = []
    for key in spaces.list_keys("gdpr/retention/"):
        if key.endswith(".jsonl.gz.gpg"):
            lines = gzip.decompress(gpg_open(spaces.get(key, max_bytes=1 << 30), BACKUP_PASSPHRASE)).splitlines()
            found += [str(json.loads(line)["id"]) for line in lines]
    return sorted(found)


def _expired_rows(conn) -> list[str]:
    return sorted(str(i) for (i,) in conn.execute(
        "SELECT e.id FROM email_events e JOIN data_retention_policies p ON p.workspace_id = e.workspace_id "
        "WHERE e.occurred_at < now() - p.retain_for"))


def _policy(conn) -> tuple[str, int]:
    workspace = conn.execute("SELECT workspace_id FROM email_events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
                             ).fetchone()[0]
    policy = conn.execute("INSERT INTO data_retention_policies (workspace_id, table_name, retain_for, action) VALUES "
                          "(%s, 'email_events', '200 days', 'archive') RETURNING id", (workspace,)).fetchone()[0]
    expired = conn.execute("SELECT count(*) FROM email_events WHERE workspace_id = %s AND occurred_at < now() - "
                           "interval '200 days'", (workspace,)).fetchone()[0]
    assert expired > 100
    return str(policy), expired


def test_a_batch_killed_before_its_delete_committed_is_archived_once(generated_db, spaces, backup_key):
    conn, gdpr = gdpr_on(generated_db)
    policy, expired = _policy(conn)
    rows = _expired_rows(conn)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COLDCOPY_")}, "DSN": generated_db,
           "POLICY": policy, "COLDCOPY_KILL_AT": "gdpr_retention.manifest_written#2"}
    killed = subprocess.run([sys.executable, "-c", KILLED], env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert _archived(spaces) == 200  # two batches' manifests: the first committed, the second cut short
    gdpr.batch = 100
    gdpr.apply_retention(gdpr.policy(policy), spaces)  # the rerun
    assert _archived(spaces) == expired  # each expired row once: the cut-short batch's archive went
    assert _archived_rows(spaces) == rows  # and every one of them (none overwritten by a later batch's object)
    assert conn.execute("SELECT count(*) FROM coldcopy_ops.retention_archives WHERE state <> 'done'").fetchone()[0] == 0


def test_a_batch_failing_after_its_upload_leaves_no_copy(generated_db, spaces, backup_key, monkeypatch):
    conn, gdpr = gdpr_on(generated_db)
    policy, expired = _policy(conn)
    gdpr.batch = 100
    from coldcopy.gdpr import retention

    calls = []

    def failing(bucket, key, manifest):  # the read-back fails (a truncated GET), once
        calls.append(key)
        if len(calls) == 2:
            raise OSError("read back cut short")
        return original(bucket, key, manifest)

    original = retention.get_bound
    monkeypatch.setattr(retention, "get_bound", failing)
    try:
        gdpr.apply_retention(gdpr.policy(policy), spaces)
    except OSError:
        pass
    assert _archived(spaces) == 100  # the failed batch's archive is gone at once
    gdpr.apply_retention(gdpr.policy(policy), spaces)
    assert _archived(spaces) == expired
    with psycopg.connect(generated_db) as check:
        assert check.execute("SELECT count(*) FROM email_events e JOIN data_retention_policies p ON p.workspace_id = "
                             "e.workspace_id WHERE e.occurred_at < now() - p.retain_for").fetchone()[0] == 0


def test_a_row_that_moves_while_its_batch_waits_is_never_deleted_unarchived(generated_db, spaces, backup_key):
    """helper-19: the batch archived the rows its locking SELECT returned, then deleted what the expired query
    named again — a row updated meanwhile (new ctid) was skipped by the first and deleted by the second."""
    import threading

    conn, gdpr = gdpr_on(generated_db)
    policy, expired = _policy(conn)
    rows = _expired_rows(conn)
    gdpr.batch = 100
    first = conn.execute("SELECT e.id FROM email_events e JOIN data_retention_policies p ON p.workspace_id = "
                         "e.workspace_id WHERE e.occurred_at < now() - p.retain_for LIMIT 1").fetchone()[0]
    with psycopg.connect(generated_db) as writer:
        writer.execute("UPDATE email_events SET event_type = event_type WHERE id = %s", (first,))
        done = threading.Thread(target=lambda: gdpr.apply_retention(gdpr.policy(policy), spaces))
        done.start()
        with psycopg.connect(generated_db, autocommit=True) as watch:
            for _ in range(200):
                if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                 "datname = current_database()").fetchone()[0]:
                    break
                threading.Event().wait(0.05)
        writer.commit()
        done.join()
    gdpr.apply_retention(gdpr.policy(policy), spaces)
    with psycopg.connect(generated_db) as check:
        gone = set(rows) - {str(i) for (i,) in check.execute("SELECT id FROM email_events")}
    assert gone <= set(_archived_rows(spaces)), sorted(gone - set(_archived_rows(spaces)))[:5]
    assert _archived_rows(spaces) == sorted(gone)


def test_a_sweep_by_another_run_never_takes_a_live_batchs_archive(generated_db, spaces, backup_key, monkeypatch):
    """helper-19: a sweep that could not see the batch's session (another role's, in pg_stat_activity) deleted a
    live batch's archive, which then committed its delete: rows in no archive. The batch holds its intent's row
    lock; the sweep skips locked intents."""
    from coldcopy.gdpr import retention

    conn, gdpr = gdpr_on(generated_db)
    policy, expired = _policy(conn)
    rows = _expired_rows(conn)
    gdpr.batch = 100
    original, other = retention.get_bound, gdpr_on(generated_db)[1]
    archive_rows = retention.RetentionPolicies._archive_rows

    def unseen(self, table, expired, params, policy, key, bucket):  # the batch's session looks gone to a sweeper
        self.conn.execute("UPDATE coldcopy_ops.retention_archives SET backend_start = '2000-01-01' WHERE "
                          "object_key = %s", (key,))
        return archive_rows(self, table, expired, params, policy, key, bucket)

    def sweeping(bucket, key, manifest):  # another run's sweep, while the batch holds its intent
        body = original(bucket, key, manifest)
        other.retention.sweep_unfinished(spaces)
        return body

    monkeypatch.setattr(retention.RetentionPolicies, "_archive_rows", unseen)
    monkeypatch.setattr(retention, "get_bound", sweeping)
    gdpr.apply_retention(gdpr.policy(policy), spaces)
    assert _archived_rows(spaces) == rows


def test_an_unrecorded_batch_archive_is_swept_after_a_while_and_no_other(generated_db, spaces, backup_key):
    from datetime import UTC, datetime, timedelta

    conn, gdpr = gdpr_on(generated_db)
    prefix = "gdpr/retention/public.email_events/ws"
    for name in ("20261208T000000-00000-0123abcd", "legacy-20250101T000000-00001"):
        spaces.put(f"{prefix}/{name}.jsonl.gz.gpg", b"x")
        spaces.put(f"{prefix}/{name}.manifest.json", b"{}")
    assert gdpr.retention.sweep_unfinished(spaces) == []  # too recent to tell from a live batch's
    later = datetime.now(UTC) + timedelta(hours=7)
    swept = gdpr.retention.sweep_unfinished(spaces, now=later)
    assert swept == [f"{prefix}/20261208T000000-00000-0123abcd.jsonl.gz.gpg"]
    assert sorted(spaces.list_keys(prefix)) == [f"{prefix}/legacy-20250101T000000-00001.jsonl.gz.gpg",
                                                f"{prefix}/legacy-20250101T000000-00001.manifest.json"]
