"""What maintenance acts on and when: the thresholds (autovacuum's defaults), a target, what a run did, and
the catalog queries that estimate bloat among the relations this login may maintain."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)
# VACUUM FULL holds ACCESS EXCLUSIVE (no reads, no writes) for its whole rewrite: its lock wait is capped here,
# whatever the retry policy grows other waits to.
ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS = 1000

# Estimated size of a table or btree index if it were rewritten now, from row counts and pg_stats widths.
_TABLE_BLOAT_SQL = """
SELECT format('%I.%I', n.nspname, c.relname), pg_relation_size(c.oid),
       greatest(0, 1 - (ceil(c.reltuples * (24 + coalesce(w.width, 32)) / (8192 * 0.9)) * 8192)
                       / nullif(pg_relation_size(c.oid), 0)::float8)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (SELECT sum(s.avg_width) AS width FROM pg_stats s
                   WHERE s.schemaname = n.nspname AND s.tablename = c.relname) w ON true
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND c.reltuples >= 0 AND {maintainable}
"""
_INDEX_BLOAT_SQL = """
SELECT format('%I.%I', n.nspname, ic.relname), format('%I.%I', n.nspname, t.relname),
       pg_relation_size(i.indexrelid),
       greatest(0, 1 - (ceil(ic.reltuples * (16 + coalesce(w.width, 8)) / (8192 * 0.9)) * 8192)
                       / nullif(pg_relation_size(i.indexrelid), 0)::float8)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
LEFT JOIN LATERAL (SELECT sum(s.avg_width) AS width FROM pg_attribute a JOIN pg_stats s
                   ON s.schemaname = n.nspname AND s.tablename = t.relname AND s.attname = a.attname
                   WHERE a.attrelid = t.oid AND a.attnum = ANY (i.indkey)) w ON true
WHERE i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND {maintainable}
"""


def maintainable(conn: psycopg.Connection, relation: str = "c") -> str:
    """SQL: whether this login may VACUUM, ANALYZE, REINDEX and drop the indexes of ``relation`` (a pg_class
    alias): its owner's rights (PostgreSQL 15, 16), or the MAINTAIN privilege (17). On Supabase the platform's
    tables (auth.*, storage.*) are other roles': before, the bloat query picked auth.refresh_tokens_token_key
    and REINDEX failed ("must be owner of index") three times, failing the weekly run."""
    if conn.info.server_version >= 170000:
        return f"has_table_privilege({relation}.oid, 'MAINTAIN')"
    return f"pg_has_role({relation}.relowner, 'USAGE')"


@dataclass(frozen=True)
class MaintenanceThresholds:
    vacuum_base: int = 50
    vacuum_scale: float = 0.2
    analyze_base: int = 50
    analyze_scale: float = 0.1
    stale_days: int = 7
    freeze_age: int = 150_000_000
    reindex_min_bytes: int = 10 * 2**20
    reindex_bloat: float = 0.3
    reindex_max_per_run: int = 5
    reindex_cooldown_days: int = 7
    full_bloat: float = 0.3
    full_min_bytes: int = 1 * 2**20
    full_max_bytes: int = 32 * 2**20


@dataclass(frozen=True)
class Target:
    name: str
    action: str
    reason: str


@dataclass(frozen=True)
class Done:
    """What :meth:`Maintenance.run` did: ``outcome`` (``done`` / ``skipped``, the mapped task's XCom), why,
    the relation's total size before and after (None when not measured) and how long it took."""
    outcome: str
    detail: str
    before: int | None
    after: int | None
    seconds: float


