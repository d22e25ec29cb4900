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
