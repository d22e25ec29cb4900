"""DETACH … CONCURRENTLY (coldcopy.partitions.detacher): waits out old readers, one at a time, interrupted ones
finalized."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.support.partitions import attached, manager


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
