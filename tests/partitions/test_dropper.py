"""Dropping detached months (coldcopy.partitions.dropper): never one whose archive no longer verifies."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from coldcopy.partitions import ArchiveError
from tests.support.partitions import manager


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
