"""Archiving a month (export, verify; coldcopy.partitions): through the DAGs, killed and failing uploads, writers
never blocked."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import botocore.exceptions
import psycopg
import pytest

from coldcopy.partitions import ArchiveError
from coldcopy.testing.in_process import run_dag
from tests.conftest import BACKUP_PASSPHRASE
from tests.support.partitions import PASSPHRASE, attached, fingerprints, manager, opened


def test_archive_round_trip_through_the_dags(generated_db, coldcopy_conn, spaces, dagbag, airflow_db, backup_key):
    from coldcopy.operators.partitions import DropDetachedPartitionsOperator

    client, bucket = spaces.client, spaces.name
    coldcopy_conn(generated_db)
    before = fingerprints(generated_db)
    run = run_dag(dagbag.get_dag("partition_maintenance"))
    assert run.state == "success"
    with psycopg.connect(generated_db) as conn:
        archived = [r for r in conn.execute(
            "SELECT partition_name, state, row_count, object_key FROM coldcopy_ops.partition_archive ORDER BY 1")]
        cutoff = conn.execute("SELECT app.month_start_utc(now(), -12)").fetchone()[0]
    expected = sorted(n for n, _ in before.items() if n < f"email_events_{cutoff:%Y_%m}")
    assert [a[0] for a in archived] == expected and len(expected) >= 3
    assert {a[1] for a in archived} == {"detached"}
    assert not set(expected) & set(attached(generated_db))
    for name, _, rows, key in archived:
        manifest_key = key.rsplit("/", 1)[0] + "/manifest.json"
        manifest = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
        assert manifest["rows"] == rows == before[name][0]
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert b"id,workspace_id" not in body  # encrypted
        csv_bytes = opened(body, BACKUP_PASSPHRASE)  # stock gpg --decrypt | gunzip
        assert hashlib.sha256(csv_bytes).hexdigest() == manifest["content_sha256"]
        assert csv_bytes.startswith(b"id,workspace_id,") and csv_bytes.count(b"\n") == rows + 1
    assert sum(before[n][0] for n in expected) > 2000

    # a second run changes nothing
    assert run_dag(dagbag.get_dag("partition_maintenance")).state == "success"
    assert attached(generated_db) == [n for n in before if n not in expected]
    said = {}
    ti = type("TaskInstance", (), {"xcom_push": staticmethod(lambda key, value: said.update({key: value}))})
    assert DropDetachedPartitionsOperator(task_id="drop_detached").execute({"ti": ti}) == []  # and says so
    assert said["result"].startswith(f"nothing due (months drop 7 d after they are detached): next: {expected[0]} on ")

    # the grace period passes: detached months are dropped
    with psycopg.connect(generated_db, autocommit=True) as conn:
        conn.execute("UPDATE coldcopy_ops.partition_archive SET detached_at = detached_at - interval '8 days'")
    assert run_dag(dagbag.get_dag("partition_maintenance")).state == "success"
    with psycopg.connect(generated_db) as conn:
        assert {s for (s,) in conn.execute("SELECT state FROM coldcopy_ops.partition_archive")} == {"dropped"}
        assert all(conn.execute("SELECT to_regclass(%s)", (f"public.{n}",)).fetchone()[0] is None for n in expected)

    # restore one month: identical rows, attached again
    month = expected[-1]
    run = run_dag(dagbag.get_dag("partition_restore"), conf={"month": f"{month[13:17]}-{month[18:20]}"})
    assert run.state == "success"
    assert month in attached(generated_db)
    assert fingerprints(generated_db)[month] == before[month]


def test_an_upload_left_unfinished_by_a_killed_try_is_aborted_by_the_next(generated_db, spaces):
    """A worker killed with SIGKILL mid-upload cannot abort its multipart upload (its parts are billed until
    someone does): the next try of the same month aborts it before uploading, and nothing else's."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month, other = rotation.archive_candidates()[:2]
        for key in (month.object_key, other.object_key):  # what two killed tries left
            upload = spaces.client.create_multipart_upload(Bucket=spaces.name, Key=key)["UploadId"]
            spaces.client.upload_part(Bucket=spaces.name, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
        rotation.archive(month, spaces)
    left = spaces.client.list_multipart_uploads(Bucket=spaces.name).get("Uploads", [])
    assert [u["Key"] for u in left] == [other.object_key]  # this month's aborted; the other month's is its own


def test_upload_failure_leaves_the_month_attached_and_the_retry_completes(generated_db, faulty_spaces):
    proxy, spaces = faulty_spaces
    client, bucket = spaces.client, spaces.name
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]
        before = fingerprints(generated_db)[month.name]
        proxy.fail_after(2_000)  # lets the upload start, then the endpoint goes away
        with pytest.raises(ArchiveError, match=f"email_events {month.month} .* left attached with all its rows"):
            rotation.archive(month, spaces)
        proxy.heal()
        assert month.name in attached(generated_db)
        assert fingerprints(generated_db)[month.name] == before
        for key in (month.object_key, month.manifest_key):  # nothing that could pass for an archive
            with pytest.raises(botocore.exceptions.ClientError, match="404|Not Found"):
                client.head_object(Bucket=bucket, Key=key)
        manifest = rotation.archive(month, spaces)
        assert manifest["rows"] == before[0] and month.name not in attached(generated_db)


def test_writers_are_not_blocked_during_premake_archive_and_detach(generated_db, spaces):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        for name in attached(generated_db)[-3:]:
            conn.execute(f"DROP TABLE public.{name}")
        workspace = conn.execute("SELECT id FROM workspaces LIMIT 1").fetchone()[0]
    stop, waits, written = threading.Event(), [], []

    def write() -> None:
        with psycopg.connect(generated_db, autocommit=True) as writer:
            writer.execute("SET lock_timeout = '2s'")
            while not stop.is_set():
                began = time.monotonic()
                row = writer.execute("INSERT INTO email_events (workspace_id, event_type, metadata) "
                                     "VALUES (%s, 'sent', '{\"probe\": true}') RETURNING id", (workspace,)).fetchone()
                waits.append(time.monotonic() - began)
                written.append(row[0])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with psycopg.connect(generated_db, autocommit=True) as conn:
            rotation = manager(conn)
            assert len(rotation.premake(3)) == 3
            for month in rotation.archive_candidates():
                rotation.archive(month, spaces)
    finally:
        stop.set()
        writer.join()
    assert len(written) > 50 and max(waits) < 1.0
    with psycopg.connect(generated_db) as conn:
        found = conn.execute("SELECT count(*) FROM email_events WHERE metadata ? 'probe'").fetchone()[0]
    assert found == len(written)


def test_verify_accepts_freezing_and_rewrites_but_refuses_any_row_changed_since_the_export(generated_db, spaces):
    client, bucket = spaces.client, spaces.name
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]
        rotation.export(month, spaces)
        conn.execute(f"VACUUM (FREEZE) public.{month.name}")
        conn.execute(f"VACUUM FULL public.{month.name}")
        rotation.verify(month, spaces)  # same row versions: freezing and rewrites keep xmin

        first = conn.execute(f"SELECT min(id) FROM public.{month.name}").fetchone()[0]
        conn.execute(f"UPDATE public.{month.name} SET bounce_type = 'hard' WHERE id = %s", (first,))
        with pytest.raises(ArchiveError, match="changed since the archive was made"):
            rotation.verify(month, spaces)

        rotation.export(month, spaces)  # the retry exports the month afresh
        conn.execute(f"WITH gone AS (DELETE FROM public.{month.name} WHERE id = %s RETURNING *) "
                     f"INSERT INTO public.{month.name} SELECT * FROM gone", (first,))  # same row, new version
        with pytest.raises(ArchiveError, match="changed since the archive was made"):
            rotation.verify(month, spaces)
        rotation.archive(month, spaces, detach=False)
        csv_bytes = opened(client.get_object(Bucket=bucket, Key=month.object_key)["Body"].read(), PASSPHRASE)
        assert f"\n{first},".encode() in csv_bytes and b",hard," in csv_bytes


def test_a_second_run_archives_no_month_the_first_already_detached(generated_db, spaces):
    """The fault campaign's finding (issue 45): two runs of partition_maintenance at once (a scheduler's double
    start). The second, working from its own list of months, exported a month the first had archived and detached:
    its state went back to 'exported' and its archive object was replaced by another one than the drop verified.
    Now each month's archive and detach hold the month's lock, and a month already detached is left as it is."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]  # what the second run listed, before the first detached it
        rotation.archive(month, spaces)  # the first run: exported, verified, detached
        sha = spaces.sha256(month.object_key)
        rotation.archive(month, spaces)  # the second run
        state = conn.execute("SELECT state FROM coldcopy_ops.partition_archive WHERE partition_name = %s",
                             (month.name,)).fetchone()[0]
    assert state == "detached"
    assert spaces.sha256(month.object_key) == sha
