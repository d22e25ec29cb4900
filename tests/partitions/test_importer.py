"""A month restored from its archive (coldcopy.partitions.importer): bound before commit, held, then rotated again."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from coldcopy.partitions import ArchiveError
from tests.support.partitions import attached, fingerprints, manager


def test_restore_refuses_an_attached_month(migrated_db, spaces):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        rotation = manager(conn)
        month = rotation.partitions()[0]
        with pytest.raises(ArchiveError, match="is attached: nothing to restore"):
            rotation.restore(month.range_start, spaces)


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
