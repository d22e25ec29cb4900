"""Storage checks (coldcopy.health.storage): sizes, unused and duplicate indexes, detached months' drop dates."""

from __future__ import annotations

import psycopg

from coldcopy import health, ops_schema
from tests.support.health import (
    texts,
)


def test_storage_breach_alerts_once_then_resolves(checker, sink):
    c = checker()
    size = c.conn.execute("SELECT pg_database_size(current_database()) AS b").fetchone()["b"]
    tiny = size / health.GB / 0.9  # the database is 90 % of this allocation
    first = c.run("sizes", storage_allocated_gb=tiny)["storage"]
    assert first.state == "breach" and 85 < first.value < 95
    assert first.details["tables"] and {"table_bytes", "index_bytes", "toast_bytes"} <= set(first.details["tables"][0])
    assert len(sink.received) == 1 and "storage breach" in texts(sink)[0]
    c.run("sizes", storage_allocated_gb=tiny)
    assert len(sink.received) == 1  # still in breach, nothing new: no repeat
    assert c.run("sizes")["storage"].state == "ok"  # 100 GB again
    assert len(sink.received) == 2 and "storage resolved" in texts(sink)[1]
    assert sink.received[1]["body"]["alert"]["kind"] == "resolved"
    c.run("sizes")
    assert len(sink.received) == 2


def test_unused_and_duplicate_indexes(checker, migrated_db, sink):
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.health_probe (id int PRIMARY KEY, email text)")
        conn.execute("INSERT INTO public.health_probe SELECT g, 'p' || g || '@example.com' "
                     "FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX health_probe_email_idx ON public.health_probe (email)")
        conn.execute("CREATE INDEX health_probe_email_dup_idx ON public.health_probe (email)")
    c = checker(unused_index_min_bytes=100_000)
    early = c.run("indexes")["unused_indexes"]  # a database built minutes ago: its statistics say nothing yet
    assert early.state == "ok" and early.summary.startswith("too early to judge (statistics 0 h old, 7 days")
    assert not [t for t in texts(sink) if "unused_indexes" in t]
    results = c.run("indexes", stats_min_days=0)
    unused = [i["index"] for i in results["unused_indexes"].details["indexes"]]
    assert "public.health_probe_email_idx" in unused and "public.health_probe_pkey" not in unused
    assert results["unused_indexes"].state == "warning"
    [dup] = [d for d in results["duplicate_indexes"].details["duplicates"] if d["table"] == "public.health_probe"]
    assert dup["indexes"] == ["public.health_probe_email_dup_idx", "public.health_probe_email_idx"]
    assert sum("unused_indexes warning" in t for t in texts(sink)) == 1
    c.run("indexes", stats_min_days=0)
    assert sum("unused_indexes" in t for t in texts(sink)) == 1


def test_a_detached_month_among_the_largest_tables_carries_its_drop_date(checker, generated_db):
    with psycopg.connect(generated_db, autocommit=True) as conn:
        ops_schema.ensure(conn, "partition_rotation")
        month = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                             "WHERE i.inhparent = 'public.email_events'::regclass ORDER BY 1 LIMIT 1").fetchone()[0]
        conn.execute(f"ALTER TABLE public.email_events DETACH PARTITION public.{month}")
        conn.execute("INSERT INTO coldcopy_ops.partition_archive (partition_name, range_start, range_end, object_key, "
                     "manifest_key, row_count, row_checksum, sha256, byte_size, state, exported_at, detached_at) "
                     "VALUES (%s, now(), now(), 'k', 'm', 0, '', '', 0, 'detached', now(), "
                     "'2026-11-01T01:00:00+00:00')", (month,))
    tables = checker(generated_db).run("sizes")["storage"].details["tables"]
    [detached] = [t for t in tables if t["name"] == f"public.{month}"]
    assert detached["detached_drops_after"].isoformat().startswith("2026-11-08")
    assert all("detached_drops_after" not in t for t in tables if t["name"] != f"public.{month}")
