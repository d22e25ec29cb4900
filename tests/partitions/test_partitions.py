"""Partition rotation of email_events against real PostgreSQL and a real S3 endpoint (moto server)."""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import botocore.exceptions
import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy import alerts, manifests
from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy
from coldcopy.operators.partitions import HorizonCheckOperator
from coldcopy.partitions import ArchiveError, PartitionManager
from coldcopy.testing.alert_sink import AlertSink
from coldcopy.testing.in_process import run_dag
from tests.conftest import BACKUP_PASSPHRASE, stock_decrypt

DAGS = Path(__file__).resolve().parents[2] / "dags"
FAST = LockRetryPolicy(attempts=20, lock_timeout_ms=200, max_lock_timeout_ms=400, backoff_s=0.1)




def fingerprints(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM app.email_events_partitions ORDER BY 1")]
        return {n: conn.execute(f"SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text "
                                f"FROM public.{n} t").fetchone() for n in names}


def attached(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [n for (n,) in conn.execute("SELECT name FROM app.email_events_partitions ORDER BY range_start")]


MANIFEST_KEY = manifests.Keyring.from_secret("archive manifests (test only), 32+ characters")
PASSPHRASE = "archive passphrase (test only)"


def opened(body: bytes, passphrase: str) -> bytes:
    """An archive object opened with stock tools: ``gpg --decrypt | gunzip``."""
    return gzip.decompress(stock_decrypt(body, passphrase))


def manager(conn, policy=FAST) -> PartitionManager:
    return PartitionManager(conn, lock_retry=policy, keyring=MANIFEST_KEY, passphrase=PASSPHRASE)


def test_premake_creates_exactly_the_missing_months(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        future = attached(migrated_db)[-3:]
        for name in future:
            conn.execute(f"DROP TABLE public.{name}")
        assert manager(conn).future_months() == 0
        assert manager(conn).premake(3) == future
        assert manager(conn).premake(3) == []
        assert manager(conn).future_months() == 3


def test_horizon_check_alerts_when_future_months_run_short(migrated_db, coldcopy_conn, monkeypatch, backup_key):
    coldcopy_conn(migrated_db)
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        for name in attached(migrated_db)[-2:]:
            conn.execute(f"DROP TABLE public.{name}")
    ti = SimpleNamespace(dag_id="partition_maintenance", run_id="r", task_id="horizon_check")
    with AlertSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_COLDCOPY_ALERTS_WEBHOOK", sink.airflow_connection())
        with pytest.raises(AirflowFailException, match="only 1 future month") as failure:
            HorizonCheckOperator(task_id="horizon_check").execute({"ti": ti})
        assert sink.texts() == []  # the page goes out once, from on_failure_callback, with this reason
        alerts.on_task_failure({"ti": SimpleNamespace(**vars(ti), try_number=1), "exception": failure.value})
        [text] = sink.texts()
        assert "horizon_check failed for good" in text and "only 1 future month" in text


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


def test_a_conflicting_lock_makes_premake_time_out_and_retry_not_hang(migrated_db):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        name = attached(migrated_db)[-1]
        conn.execute(f"DROP TABLE public.{name}")
    with psycopg.connect(migrated_db) as blocker, psycopg.connect(migrated_db, autocommit=True) as conn:
        blocker.execute("LOCK TABLE public.email_events IN SHARE MODE")  # conflicts with ATTACH's lock
        started = time.monotonic()
        policy = LockRetryPolicy(attempts=3, lock_timeout_ms=200, max_lock_timeout_ms=200, backoff_s=0.1)
        with pytest.raises(LockRetriesExhausted, match="premake of email_events .* 3 attempts"):
            manager(conn, policy).premake(3)
        assert time.monotonic() - started < 5
        threading.Timer(0.5, blocker.rollback).start()
        assert manager(conn).premake(3) == [name]  # retries until the blocker is gone


def test_detach_waits_out_an_old_reader_with_lock_timeout_and_finalizes(generated_db, spaces):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]
        rotation.export(month, spaces)
        rotation.verify(month, spaces)
        with psycopg.connect(generated_db) as reader:
            reader.execute("SELECT count(*) FROM email_events")  # open transaction that has seen the partition
            threading.Timer(1.5, reader.rollback).start()
            started = time.monotonic()
            rotation.detach(month)
            assert time.monotonic() - started >= 1.0
        assert month.name not in attached(generated_db)
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{month.name}",)).fetchone()[0]


def test_restore_refuses_an_attached_month(migrated_db, spaces):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.partitions()[0]
        with pytest.raises(ArchiveError, match="is attached: nothing to restore"):
            rotation.restore(month.range_start, spaces)


def test_drop_keeps_a_month_whose_archive_was_tampered_with(generated_db, spaces):
    client, bucket = spaces.client, spaces.name
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]
        rotation.archive(month, spaces)
        client.put_object(Bucket=bucket, Key=month.object_key, Body=b"not the archive")
        with pytest.raises(ArchiveError, match="no longer matches the recorded sha256; not dropping"):
            rotation.drop_detached(spaces, grace=timedelta(0))
        assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{month.name}",)).fetchone()[0]


def test_parallel_archives_serialize_their_detaches_and_finalize_an_interrupted_one(generated_db, spaces):
    """Mapped archive tasks run in parallel; PostgreSQL allows one pending detach per partitioned table."""
    with psycopg.connect(generated_db, autocommit=True) as conn:
        months = manager(conn).archive_candidates()
    assert len(months) >= 3
    interrupted, parallel = months[0], months[1:4]
    with psycopg.connect(generated_db, autocommit=True) as conn:  # leave a detach pending, as a killed task would
        with psycopg.connect(generated_db) as reader:
            reader.execute("SELECT count(*) FROM email_events")  # an old snapshot makes DETACH wait in phase 2
            detacher = psycopg.connect(generated_db, autocommit=True)
            pid = detacher.info.backend_pid
            threading.Timer(0.5, lambda: conn.execute("SELECT pg_cancel_backend(%s)", (pid,))).start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                detacher.execute(f"ALTER TABLE email_events DETACH PARTITION public.{interrupted.name} CONCURRENTLY")
            detacher.close()
    assert [p.name for p in manager(psycopg.connect(generated_db, autocommit=True)).partitions()
            if p.detach_pending] == [interrupted.name]

    errors: list[BaseException] = []

    def archive(month) -> None:
        try:
            with psycopg.connect(generated_db, autocommit=True) as conn:
                manager(conn).archive(month, spaces)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=archive, args=(m,)) for m in parallel]
    with psycopg.connect(generated_db) as reader:  # a reader that keeps detaches waiting a little
        reader.execute("SELECT count(*) FROM email_events")
        for t in threads:
            t.start()
        time.sleep(1.0)
        reader.rollback()
    for t in threads:
        t.join()
    assert errors == []
    left = attached(generated_db)
    assert not {m.name for m in (interrupted, *parallel)} & set(left)


def test_restore_of_a_month_never_archived_fails_at_once_with_where_it_looked(migrated_db, spaces, coldcopy_conn,
                                                                              backup_key):
    from datetime import UTC, datetime

    from coldcopy.operators.partitions import RestorePartitionOperator

    bucket = spaces.name
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        with pytest.raises(ArchiveError, match=f"no archive for 1999-01 under s3://{bucket}/archive/email_events/"
                                               "1999/01/"):
            manager(conn).restore(datetime(1999, 1, 1, tzinfo=UTC), spaces)
        with pytest.raises(ArchiveError, match="holds no archived month at all"):
            manager(conn).restore(datetime(1999, 1, 1, tzinfo=UTC), spaces)
        for month in ("2024/05", "2024/07", "2023/01"):  # what the bucket holds: the nearest are named
            spaces.put(f"archive/email_events/{month}/manifest.json", b"{}")
        spaces.put("archive/email_events/2024/06/junk.json", b"{}")
        with pytest.raises(ArchiveError, match=r"nearest to it: 2023-01, 2024-05, 2024-07 \(of 3\); trigger "
                                               "partition_restore"):
            manager(conn).restore(datetime(2024, 6, 1, tzinfo=UTC), spaces)
    coldcopy_conn(migrated_db)
    with pytest.raises(AirflowFailException, match="no archive for 1999-01"):  # fail, not retry 3 times
        RestorePartitionOperator(task_id="restore", month="1999-01").execute({})


def test_a_restored_month_is_held_then_detached_and_dropped_without_a_new_upload(generated_db, spaces):
    from datetime import UTC, datetime

    client, bucket = spaces.client, spaces.name
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.archive_candidates()[-1]
        rotation.archive(month, spaces)
        rotation.drop_detached(spaces, grace=timedelta(0))
        uploaded = client.head_object(Bucket=bucket, Key=month.object_key)
        rotation.restore(month.range_start, spaces, hold=timedelta(days=30), restored_by="alice")
        assert month.name in attached(generated_db)

        in_ten_days, in_forty_days = (datetime.now(UTC) + timedelta(days=d) for d in (10, 40))
        assert month.name not in {p.name for p in rotation.archive_candidates(now=in_ten_days)}
        [(name, held_until, who)] = rotation.held(now=in_ten_days)
        assert (name, who) == (month.name, "alice") and held_until > in_ten_days

        due = {p.name: p for p in rotation.archive_candidates(now=in_forty_days)}
        assert month.name in due and rotation.held(now=in_forty_days) == []
        rotation.archive(due[month.name], spaces, detach=False)  # verifies the existing archive
        assert rotation.detach_verified() == [month.name]
        assert rotation.drop_detached(spaces, grace=timedelta(0)) == [month.name]
    again = client.head_object(Bucket=bucket, Key=month.object_key)
    assert (again["ETag"], again["LastModified"]) == (uploaded["ETag"], uploaded["LastModified"])  # not re-uploaded
    assert month.name not in attached(generated_db)


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


def test_restore_loads_exactly_the_exported_rows_and_refuses_a_swapped_object(generated_db, spaces):
    client, bucket = spaces.client, spaces.name
    with psycopg.connect(generated_db, autocommit=True) as conn:
        rotation = manager(conn)
        first, second = rotation.archive_candidates()[-2:]
        before = fingerprints(generated_db)
        for month in (first, second):
            rotation.archive(month, spaces)
        rotation.drop_detached(spaces, grace=timedelta(0))
        rotation.restore(first.range_start, spaces)
        assert fingerprints(generated_db)[first.name] == before[first.name]

        # another month's valid archive under this month's key: sha256 differs from the signed manifest
        client.copy_object(Bucket=bucket, Key=second.object_key,
                           CopySource={"Bucket": bucket, "Key": first.object_key})
        with pytest.raises(ArchiveError, match="not restored .rolled back.: object sha256/size"):
            rotation.restore(second.range_start, spaces)
        assert conn.execute("SELECT to_regclass(%s)", (f"public.{second.name}",)).fetchone()[0] is None
