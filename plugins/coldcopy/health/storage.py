"""Sizes and indexes: the runbook's storage and index checks."""

from __future__ import annotations

import logging
from datetime import timedelta

from coldcopy import PARTITION_DROP_GRACE_DAYS
from coldcopy.health.results import GB, Context, Result, graded

log = logging.getLogger(__name__)


# -- sizes ----------------------------------------------------------------------------------------------

def check_sizes(c: Context) -> list[Result]:
    db_bytes = c.one("SELECT pg_database_size(current_database()) AS b")["b"]
    tables = c.rows("""
        SELECT format('%I.%I', n.nspname, r.relname) AS name, sum(pg_table_size(p.oid))::bigint AS table_bytes,
               sum(pg_indexes_size(p.oid))::bigint AS index_bytes,
               sum(CASE WHEN p.reltoastrelid <> 0 THEN pg_total_relation_size(p.reltoastrelid) ELSE 0 END)::bigint
                 AS toast_bytes,
               sum(pg_total_relation_size(p.oid))::bigint AS total_bytes
        FROM pg_class p
        JOIN pg_class r ON r.oid = coalesce(pg_partition_root(p.oid), p.oid)
        JOIN pg_namespace n ON n.oid = r.relnamespace
        WHERE p.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        GROUP BY 1 ORDER BY total_bytes DESC LIMIT 25""")
    if c.has_table("coldcopy_ops.partition_archive"):  # detached months, and when partition_maintenance drops them
        detached = {f"public.{r['partition_name']}": r["drops_after"] for r in c.rows(
            "SELECT partition_name, detached_at + %s AS drops_after "
            "FROM coldcopy_ops.partition_archive WHERE state = 'detached'",
            (timedelta(days=PARTITION_DROP_GRACE_DAYS),))}
        for table in tables:
            if table["name"] in detached:
                table["detached_drops_after"] = detached[table["name"]]
    allocated = c.t.storage_allocated_gb * GB
    pct = 100.0 * db_bytes / allocated
    day_ago = c.previous("storage", timedelta(hours=23))
    growth = None
    if day_ago and day_ago["details"].get("db_bytes") is not None:
        days = (c.one("SELECT now() AS t")["t"] - day_ago["taken_at"]).total_seconds() / 86400
        growth = (db_bytes - day_ago["details"]["db_bytes"]) / days
        then = {t["name"]: t["total_bytes"] for t in day_ago["details"].get("tables", [])}
        for table in tables:
            if table["name"] in then:
                table["growth_bytes_per_day"] = int((table["total_bytes"] - then[table["name"]]) / days)
    state = graded(pct, c.t.storage_warn_pct, c.t.storage_breach_pct)
    summary = f"{db_bytes / GB:.2f} GB of {c.t.storage_allocated_gb:g} GB allocated ({pct:.1f} %)"
    if growth is not None:
        summary += f", growing {growth / GB:+.2f} GB/day"
    return [Result("storage", state, summary, pct, "%", {
        "db_bytes": db_bytes, "allocated_bytes": int(allocated), "growth_bytes_per_day": growth, "tables": tables})]


# -- indexes --------------------------------------------------------------------------------------------

def check_indexes(c: Context) -> list[Result]:
    since = c.one("SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()")["stats_reset"]
    # A partitioned index counts the scans of all its partitions' indexes.
    unused = c.rows("""
        SELECT format('%%I.%%I', n.nspname, ri.relname) AS index, format('%%I.%%I', n.nspname, rt.relname) AS table,
               sum(s.idx_scan)::bigint AS scans, sum(pg_relation_size(s.indexrelid))::bigint AS bytes
        FROM pg_stat_user_indexes s
        JOIN pg_class ri ON ri.oid = coalesce(pg_partition_root(s.indexrelid), s.indexrelid)
        JOIN pg_index i ON i.indexrelid = ri.oid
        JOIN pg_class rt ON rt.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ri.relnamespace
        WHERE NOT i.indisunique AND NOT i.indisprimary AND n.nspname <> 'coldcopy_ops'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ri.oid)
        GROUP BY 1, 2 HAVING sum(s.idx_scan) = 0 AND sum(pg_relation_size(s.indexrelid)) >= %s
        ORDER BY bytes DESC""", (c.t.unused_index_min_bytes,))
    duplicates = c.rows("""
        SELECT format('%I.%I', n.nspname, t.relname) AS table,
               array_agg(format('%I.%I', n.nspname, x.relname) ORDER BY x.relname) AS indexes,
               sum(pg_relation_size(x.oid))::bigint AS bytes
        FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = x.relnamespace
        WHERE NOT x.relispartition AND n.nspname NOT IN ('pg_catalog', 'pg_toast', 'information_schema')
        GROUP BY n.nspname, t.relname, i.indrelid, x.relam, i.indkey::text, i.indclass::text, i.indcollation::text,
                 coalesce(pg_get_expr(i.indexprs, i.indrelid), ''), coalesce(pg_get_expr(i.indpred, i.indrelid), '')
        HAVING count(*) > 1 ORDER BY bytes DESC""")
    unused_bytes = sum(u["bytes"] for u in unused)
    early = c.too_early()
    return [
        Result("unused_indexes", "ok", f"{early}: {len(unused)} index(es) not scanned yet", None, "indexes",
               {"stats_since": since, "indexes": unused, "too_early": True}) if early else
        Result("unused_indexes", "warning" if unused else "ok",
               f"{len(unused)} non-unique index(es) never scanned since {since or 'the stats reset'}, "
               f"{unused_bytes / 1024**2:.1f} MB" if unused else "every index above the size floor is used",
               len(unused), "indexes", {"stats_since": since, "indexes": unused}),
        Result("duplicate_indexes", "warning" if duplicates else "ok",
               f"{len(duplicates)} set(s) of duplicate indexes (same table, columns, opclass, predicate)"
               if duplicates else "no duplicate indexes", len(duplicates), "sets", {"duplicates": duplicates}),
    ]
