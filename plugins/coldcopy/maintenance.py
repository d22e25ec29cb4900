"""Vacuum, freeze, reindex, VACUUM FULL and statistics: targeted, logged, and never in the application's way.

Each statement runs outside a transaction block (VACUUM and REINDEX CONCURRENTLY require it) with its own
``statement_timeout`` ceiling and a short ``lock_timeout`` retried with backoff; a table that stays locked
is skipped this run and reported, and the job goes on with the rest. Every action is written to
``coldcopy_ops.maintenance_log`` (what, target, started, duration, sizes before and after, outcome).

Selection (all thresholds are parameters; defaults follow autovacuum's):

* **vacuum**: dead tuples ≥ ``50 + 0.2 × live`` (autovacuum_vacuum_threshold/scale_factor), or
  modifications since the last analyze ≥ ``50 + 0.1 × live``, or dead tuples and no (auto)vacuum for 7 days;
* **freeze**: ``age(relfrozenxid)`` over 150 million (vacuum_freeze_table_age);
* **reindex**: btree indexes over 10 MB whose estimated bloat is over 30 %, not reindexed in 7 days,
  at most 5 a run, ``REINDEX INDEX CONCURRENTLY``; leftovers of failed concurrent builds
  (INVALID ``*_ccnew*``/``*_ccold*``) are dropped first;
* **VACUUM FULL**: tables over 30 % estimated bloat and under 32 MB (it holds ACCESS EXCLUSIVE for the whole
  rewrite, so only under a short lock_timeout); bigger ones are reported for pg_repack instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import psycopg
from psycopg import sql

from coldcopy import ops_schema, safe_names
from coldcopy.lock_retries import LockRetriesExhausted, LockRetryPolicy, under_lock_timeout

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


class Maintenance:
    """Maintenance on one autocommit connection.

    :param statement_timeout: ceiling for each maintenance statement.
    :param lock_retry: lock_timeout and retry schedule for each statement.
    """

    def __init__(self, conn: psycopg.Connection, *, thresholds: MaintenanceThresholds = MaintenanceThresholds(),
                 statement_timeout: str = "1h", lock_retry: LockRetryPolicy = LockRetryPolicy(),
                 dag_id: str | None = None, run_id: str | None = None) -> None:
        self.conn, self.t, self.statement_timeout, self.lock_retry = conn, thresholds, statement_timeout, lock_retry
        self.dag_id, self.run_id = dag_id, run_id
        ops_schema.ensure(conn, "maintenance")

    # -- selection ---------------------------------------------------------------------------------------

    def vacuum_plan(self, *, everything: bool = False) -> tuple[list[Target], list[Target]]:
        """``(to vacuum, not needed)``, each with its reason; every user table is in one of the two lists."""
        mine = maintainable(self.conn)
        rows = self.conn.execute(f"""
            SELECT format('%I.%I', s.schemaname, s.relname), s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze,
                   greatest(s.last_vacuum, s.last_autovacuum), age(c.relfrozenxid), {mine}, c.relowner::regrole::text
            FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
            WHERE c.relkind = 'r' AND s.schemaname <> 'coldcopy_ops' ORDER BY 1""").fetchall()
        now = self.conn.execute("SELECT now()").fetchone()[0]
        picked, skipped = [], []
        for name, live, dead, modified, last_vacuum, xid_age, mine, owner in rows:
            t = self.t
            if not mine:
                skipped.append(Target(name, "vacuum", f"not this login's to maintain (owner {owner}): the "
                                                      "platform's own maintenance covers it"))
            elif xid_age > t.freeze_age:
                picked.append(Target(name, "vacuum_freeze", f"age(relfrozenxid) {xid_age:,} > {t.freeze_age:,}"))
            elif everything:
                picked.append(Target(name, "vacuum", "all tables requested"))
            elif dead >= t.vacuum_base + t.vacuum_scale * live and dead > 0:
                picked.append(Target(name, "vacuum", f"{dead:,} dead tuples ≥ {t.vacuum_base} + "
                                                     f"{t.vacuum_scale} × {live:,} live"))
            elif modified >= t.analyze_base + t.analyze_scale * live and modified > 0:
                picked.append(Target(name, "vacuum", f"{modified:,} rows modified since the last analyze"))
            elif dead > 0 and (last_vacuum is None or (now - last_vacuum).days >= t.stale_days):
                picked.append(Target(name, "vacuum", f"{dead:,} dead tuples and no vacuum for {t.stale_days}+ days"))
            else:
                skipped.append(Target(name, "vacuum", f"not needed: {dead:,} dead, {modified:,} modified of "
                                                      f"{live:,} live"))
        return picked, skipped

    def reindex_plan(self) -> list[Target]:
        cooldown = {t for (t,) in self.conn.execute(
            "SELECT target FROM coldcopy_ops.maintenance_log WHERE action = 'reindex' AND outcome = 'done' "
            "AND started_at > now() - make_interval(days => %s)", (self.t.reindex_cooldown_days,)).fetchall()}
        candidates = sorted(
            ((size * bloat, index, size, bloat) for index, _, size, bloat in self.conn.execute(
                _INDEX_BLOAT_SQL.format(maintainable=maintainable(self.conn, "t")))
             if size >= self.t.reindex_min_bytes and (bloat or 0) >= self.t.reindex_bloat and index not in cooldown),
            reverse=True)
        return [Target(index, "reindex", f"{size / 2**20:.1f} MB, ~{bloat:.0%} bloat")
                for _, index, size, bloat in candidates[: self.t.reindex_max_per_run]]

    def full_vacuum_plan(self) -> tuple[list[Target], list[Target]]:
        """``(VACUUM FULL now, report for pg_repack)``."""
        now, report = [], []
        for table, size, bloat in self.conn.execute(_TABLE_BLOAT_SQL.format(maintainable=maintainable(self.conn))):
            if (bloat or 0) < self.t.full_bloat or size < self.t.full_min_bytes or table.startswith("coldcopy_ops."):
                continue
            reason = f"{size / 2**20:.1f} MB, ~{bloat:.0%} bloat"
            if size <= self.t.full_max_bytes:
                now.append(Target(table, "vacuum_full", reason))
            else:
                report.append(Target(table, "vacuum_full", reason + f": over {self.t.full_max_bytes / 2**20:.0f} MB, "
                                     "use pg_repack (online) instead of an ACCESS EXCLUSIVE rewrite"))
        return now, report

    # -- actions -----------------------------------------------------------------------------------------

    def size_of(self, relation: str) -> int:
        return self.conn.execute("SELECT pg_total_relation_size(%s::regclass)", (relation,)).fetchone()[0]

    def run(self, target: Target) -> Done:
        """Carry out one action; returns what it did after logging and recording it."""
        statement = {
            "vacuum": "VACUUM (ANALYZE) {}",
            "vacuum_freeze": "VACUUM (FREEZE, ANALYZE) {}",
            "vacuum_full": "VACUUM (FULL, ANALYZE) {}",
            "reindex": "REINDEX INDEX CONCURRENTLY {}",
            "analyze": "ANALYZE {}",
            "drop_invalid_index": "DROP INDEX CONCURRENTLY IF EXISTS {}",
        }[target.action]
        started, started_at = time.monotonic(), self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        schema, name = safe_names.relation_parts(  # the target arrives through XCom: only the catalog's name is used
            self.conn, target.name,
            kinds=(safe_names.INDEX_KINDS if target.action in ("reindex", "drop_invalid_index")
                   else safe_names.TABLE_KINDS))
        relation = sql.Identifier(schema, name)
        before = self.size_of(target.name) if target.action != "drop_invalid_index" else None


        policy = self.lock_retry
        if target.action == "vacuum_full":  # ACCESS EXCLUSIVE for the whole rewrite: never wait over 1 s for it
            policy = replace(policy, lock_timeout_ms=min(policy.lock_timeout_ms, ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS),
                             max_lock_timeout_ms=ACCESS_EXCLUSIVE_LOCK_TIMEOUT_MS)
        try:
            # VACUUM and … CONCURRENTLY refuse a transaction block.
            under_lock_timeout(self.conn, lambda: self.conn.execute(sql.SQL(statement).format(relation)), policy,
                               what=f"{target.action} {target.name}", transaction=False,
                               statement_timeout=self.statement_timeout)
            outcome, detail = "done", target.reason
        except LockRetriesExhausted as error:
            outcome, detail = "skipped", f"stayed locked, skipped this run: {error}"
            log.warning("%s %s: %s", target.action, target.name, detail)
        except Exception:
            if target.action == "reindex":
                self._drop_ccnew_of(schema, name)
            raise
        if outcome == "skipped" and target.action == "reindex":
            self._drop_ccnew_of(schema, name)
        after = self.size_of(target.name) if outcome == "done" and before is not None else None
        self.record(target.action, target.name, started_at, started, outcome, detail, before, after)
        return Done(outcome, detail, before, after, time.monotonic() - started)

    def _drop_ccnew_of(self, schema: str, name: str) -> None:
        """A failed ``REINDEX … CONCURRENTLY`` leaves an INVALID ``<index>_ccnew`` that every write still
        maintains: drop it now, not at next week's cleanup."""
        leftovers = self.conn.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND n.nspname = %s "
            "AND c.relname LIKE %s", (schema, name[:59].replace("_", "\\_") + "\\_ccnew%")).fetchall()
        for (leftover,) in leftovers:
            self.conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, leftover)))
            log.warning("dropped %s.%s, left INVALID by the failed REINDEX CONCURRENTLY", schema, leftover)

    def record(self, action: str, target: str, started_at, started: float, outcome: str, detail: str,
               before: int | None = None, after: int | None = None) -> None:
        self.conn.execute(
            "INSERT INTO coldcopy_ops.maintenance_log (action, target, dag_id, run_id, started_at, duration_ms, "
            "size_before, size_after, outcome, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (action, target, self.dag_id, self.run_id, started_at, int((time.monotonic() - started) * 1000),
             before, after, outcome, detail[:2000]))

    def report(self, target: Target) -> None:
        """Log a target that needs work this job will not do (e.g. too big for VACUUM FULL)."""
        log.warning("reported, not done: %s %s — %s", target.action, target.name, target.reason)
        self.record(target.action, target.name, self.conn.execute("SELECT clock_timestamp()").fetchone()[0],
                    time.monotonic(), "reported", target.reason)

    def invalid_leftovers(self) -> list[Target]:
        """INVALID indexes left by failed concurrent builds (``*_ccnew*``, ``*_ccold*``)."""
        rows = self.conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE NOT i.indisvalid AND (c.relname LIKE '%\\_ccnew%' OR c.relname LIKE '%\\_ccold%') AND "
            + maintainable(self.conn, "t")).fetchall()
        return [Target(name, "drop_invalid_index", "INVALID leftover of a failed concurrent build") for (name,) in rows]

    def stale_statistics(self) -> list[Target]:
        rows = self.conn.execute(
            "SELECT format('%%I.%%I', s.schemaname, s.relname), s.n_mod_since_analyze FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid WHERE s.n_mod_since_analyze >= %s + %s * s.n_live_tup "
            "AND s.n_mod_since_analyze > 0 AND s.schemaname <> 'coldcopy_ops' AND " + maintainable(self.conn) +
            " ORDER BY 1", (self.t.analyze_base, self.t.analyze_scale)).fetchall()
        return [Target(name, "analyze", f"{modified:,} rows modified since the last analyze")
                for name, modified in rows]

    def purge_cache(self, batch_size: int = 5000) -> int:
        started, started_at = time.monotonic(), self.conn.execute("SELECT clock_timestamp()").fetchone()[0]
        total = 0
        while deleted := self.conn.execute("SELECT app.purge_expired_cache(%s)", (batch_size,)).fetchone()[0]:
            total += deleted
        self.record("purge_cache", "app.purge_expired_cache", started_at, started, "done",
                    f"{total} expired cache rows deleted in batches of {batch_size}")
        return total
