"""Selection: which tables to vacuum or freeze, which indexes to reindex, which tables VACUUM FULL may take, the
invalid leftovers of concurrent builds, and statistics gone stale: read from the catalog, nothing changed."""

from __future__ import annotations

import psycopg

from coldcopy.maintenance.targets import (
    _INDEX_BLOAT_SQL,
    _TABLE_BLOAT_SQL,
    MaintenanceThresholds,
    Target,
    maintainable,
)


class Selection:
    """The targets of a run, by :class:`MaintenanceThresholds`."""

    def __init__(self, conn: psycopg.Connection, thresholds: MaintenanceThresholds) -> None:
        self.conn, self.t = conn, thresholds

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
