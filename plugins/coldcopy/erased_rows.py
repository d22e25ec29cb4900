"""The erasure ledger applied to rows coming back into the database: a month restored from the bucket is
cleaned of the people erased since it was archived (``partition_restore``), as a whole-database restore is
(:mod:`coldcopy.gdpr`). Core, not GDPR's: every way back in applies it."""

from __future__ import annotations

import psycopg
from psycopg import sql

from coldcopy import safe_names


def drop_erased_rows(conn: psycopg.Connection, table: str) -> int:
    """Delete from ``table`` (an email_events month being restored, not yet attached) the rows of leads and
    messages erased since (the ledger's one-way keys of their ids); returns how many."""
    return conn.execute(sql.SQL(
        "WITH l AS (SELECT coalesce(array_agg(h), '{{}}') AS h FROM coldcopy_ops.erasure_ledger, unnest(id_hashes) h) "
        "DELETE FROM {} t USING l "
        "WHERE coldcopy_ops.id_hash(t.lead_id) = ANY(l.h) OR coldcopy_ops.id_hash(t.message_id) = ANY(l.h)"
    ).format(safe_names.relation(conn, table))).rowcount
