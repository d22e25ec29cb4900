"""Erasure (coldcopy.gdpr.erasure): every copy in the database, detached months and archives included."""

from __future__ import annotations

import gzip
import json

import psycopg
import pytest

from coldcopy.refresh.dispatch import refresher_for
from coldcopy.refresh.runs import RefreshRun
from tests.conftest import BACKUP_PASSPHRASE
from tests.conftest import stock_decrypt as decrypt
from tests.support.gdpr import KEY, gdpr_on, month_with_a_lead, occurrences, request, subject_of, subjects_of


def test_an_erasure_cut_short_before_its_refresh_is_finished_by_the_retry(generated_db, spaces, backup_key):
    """The fault campaign's finding (issue 45): an erasure killed after deleting the person's rows and before
    refreshing the summaries that counted them left the lead in analytics.lead_engagement (and in the capture's
    deltas) for good: the retry deleted nothing, so it refreshed nothing. A retry of a cut-short erasure now
    refreshes every view over the person's tables."""
    subject = subject_of(generated_db)
    conn, gdpr = gdpr_on(generated_db)
    refresher_for(conn, "analytics.lead_engagement").run(RefreshRun(run_id="fill"))
    request_id = request(generated_db, subject, "erasure")

    class Killed(BaseException):  # what a SIGKILL leaves: no except clause of ours runs
        pass

    refresh = gdpr.requests.dashboards.refresh
    gdpr.requests.dashboards.refresh = lambda views, run_id: (_ for _ in ()).throw(Killed())
    with pytest.raises(Killed):
        gdpr.handle(request_id, spaces)
    assert conn.execute("SELECT count(*) FROM leads WHERE id = %s", (subject["lead_id"],)).fetchone()[0] == 0
    assert occurrences(generated_db, str(subject["lead_id"]))  # still counted in the summary
    gdpr.requests.dashboards.refresh = refresh
    result = gdpr.handle(request_id, spaces)  # the retry
    assert "analytics.lead_engagement" in result["views_refreshed"]
    assert occurrences(generated_db, str(subject["lead_id"])) == []


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
