"""The ``coldcopy_ops`` schema: bookkeeping tables of the ops jobs, defined in ``sql/ops/*.sql``.

Each file is idempotent and applied on first use by the job that needs it, so the application's
migrations stay exactly the application's. A file is applied only when ``coldcopy_ops.ops_objects``
does not hold its current checksum: jobs run every hour, and DDL on every run would take locks that
queue behind (and in front of) application writes. When it is applied, it runs under ``lock_timeout``
with retries, like every other DDL of ours.
"""

from __future__ import annotations

import hashlib

import psycopg

from coldcopy import SQL_DIR
from coldcopy.lock_retries import LockRetryPolicy, under_lock_timeout

OPS_SQL_DIR = SQL_DIR / "ops"
# Serializes concurrent first uses: two sessions running CREATE TABLE IF NOT EXISTS at once can collide.
_ENSURE_LOCK_KEY = 4_206_318_711_032_002
_REGISTRY_DDL = """
CREATE SCHEMA IF NOT EXISTS coldcopy_ops;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ops_objects (
  name text PRIMARY KEY,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON coldcopy_ops.ops_objects FROM PUBLIC;
"""


def _applied_checksum(conn: psycopg.Connection, name: str) -> str | None:
    if not conn.execute("SELECT to_regclass('coldcopy_ops.ops_objects') IS NOT NULL").fetchone()[0]:
        return None
    row = conn.execute("SELECT checksum FROM coldcopy_ops.ops_objects WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def ensure(conn: psycopg.Connection, name: str, policy: LockRetryPolicy = LockRetryPolicy()) -> bool:
    """Apply ``sql/ops/<name>.sql`` unless already applied; returns whether it ran.

    ``conn`` must be in autocommit mode; the file runs in a transaction of its own.
    """
    ddl = (OPS_SQL_DIR / f"{name}.sql").read_bytes()
    checksum = hashlib.sha256(ddl).hexdigest()
    if _applied_checksum(conn, name) == checksum:
        return False

    def apply() -> bool:
        if conn.execute("SELECT to_regclass('coldcopy_ops.ops_objects') IS NOT NULL").fetchone()[0]:
            # A lock no other login can take (LOCK TABLE needs a privilege PUBLIC lacks here), unlike an advisory
            # key anyone can compute and hold; SHARE ROW EXCLUSIVE conflicts with itself, not with readers.
            conn.execute("LOCK TABLE coldcopy_ops.ops_objects IN SHARE ROW EXCLUSIVE MODE")
        else:  # the very first use: nothing of ours to lock yet
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_ENSURE_LOCK_KEY,))
        if _applied_checksum(conn, name) == checksum:
            return False  # another session got here first
        conn.execute(_REGISTRY_DDL)
        conn.execute(ddl)
        conn.execute(
            "INSERT INTO coldcopy_ops.ops_objects (name, checksum) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()",
            (name, checksum),
        )
        return True

    return under_lock_timeout(conn, apply, policy, what=f"coldcopy_ops objects {name}.sql")
