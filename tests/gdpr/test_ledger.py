"""The erasure ledger (coldcopy.gdpr.ledger): mirrored signed, re-applied to a restored database, junk reported."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from coldcopy import manifests
from coldcopy.gdpr import reapply_after_restore
from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.erasures import Dashboards
from coldcopy.refresh.runs import RefreshRun
from tests.conftest import BACKUP_PASSPHRASE, ROOT, SUBJECT_PEPPER
from tests.support.gdpr import KEY, gdpr_on, occurrences, request, subject_of, subjects_of


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
    done, problems = reapply_after_restore(target, spaces, KEY, None, SUBJECT_PEPPER, Dashboards)
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
