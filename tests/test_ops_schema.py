"""coldcopy.ops_schema: the ops files applied once per checksum, serialized by a lock only the ops role can take."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from coldcopy import ops_schema
from coldcopy.lock_retries import LockRetryPolicy

pytestmark = pytest.mark.integration


def test_a_login_without_privileges_cannot_block_a_changed_ops_file(migrated_db, admin_dsn):
    """Before: ensure() serialized on an advisory key computable from the repository; any login holding it made
    every first use of a changed ops file fail after its retries (a deploy's first refresh, backup…)."""
    login = f"nobody_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {login} LOGIN")
    try:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            ops_schema.ensure(conn, "health")
            conn.execute("UPDATE coldcopy_ops.ops_objects SET checksum = 'changed' WHERE name = 'health'")
        with psycopg.connect(make_conninfo(migrated_db, user=login), autocommit=True) as squatter:
            squatter.execute("SELECT pg_advisory_lock(%s)", (ops_schema._ENSURE_LOCK_KEY,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege), squatter.transaction():
                squatter.execute("LOCK TABLE coldcopy_ops.ops_objects IN SHARE ROW EXCLUSIVE MODE")
            with psycopg.connect(migrated_db, autocommit=True) as conn:
                assert ops_schema.ensure(conn, "health", LockRetryPolicy(attempts=1, lock_timeout_ms=500)) is True
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE {login}")
