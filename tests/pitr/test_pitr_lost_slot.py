"""A slot the server invalidated (issue 32): past ``max_slot_wal_keep_size`` (4 GB on Supabase) PostgreSQL
removes the WAL the slot needs and marks it ``lost``. Before, nothing read ``wal_status``: ``change_archive``
retried for minutes on "can no longer get changes from replication slot" while ``db_health`` reported ok."""

from __future__ import annotations

import time

import psycopg
import pytest

from coldcopy.pitr import chain as chains
from tests.pitr.test_pitr_anchor import health
from tests.support.pitr import archiver_for, write


def test_a_slot_the_server_invalidated_breaks_the_chain_at_once_and_db_health_says_so(logical, pitr_db, spaces):
    archiver = archiver_for(pitr_db, spaces)
    archiver.drain_once()
    write(pitr_db, "kept")
    archiver.drain_once()
    with psycopg.connect(logical.dsn, autocommit=True) as admin:
        admin.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        admin.execute("SELECT pg_reload_conf()")
    try:
        with psycopg.connect(pitr_db, autocommit=True) as conn:
            for n in range(4):  # the application writes on; nobody drains
                write(pitr_db, f"lost{n}", rows=200)
                conn.execute("SELECT pg_switch_wal()")
            conn.execute("CHECKPOINT")
            status = conn.execute("SELECT wal_status FROM pg_replication_slots").fetchone()[0]
        assert status == "lost"
        result = health(pitr_db)
        assert result.state == "breach" and "invalidated by the server" in result.summary, result.summary
        started = time.monotonic()
        with pytest.raises(chains.ChainError, match="invalidated by the server .* take a base backup now"):
            archiver.drain_once()
        assert time.monotonic() - started < 10  # at once, not minutes of retries
        with psycopg.connect(pitr_db) as conn:
            broken_at, reason = conn.execute("SELECT broken_at, broken_reason FROM coldcopy_ops.change_archive"
                                             ).fetchone()
        assert broken_at is not None and "wal_status lost" in reason
    finally:
        with psycopg.connect(logical.dsn, autocommit=True) as admin:
            admin.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            admin.execute("SELECT pg_reload_conf()")
