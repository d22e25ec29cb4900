-- Objects of the materialized-view refresh jobs, owned by ColdCopy DB Ops (not by the application schema).
-- Idempotent; applied by coldcopy.ops_schema.ensure() before the first refresh.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

-- Every refresh decision: refreshed (concurrently or plain), skipped and why, or failed.
CREATE TABLE IF NOT EXISTS coldcopy_ops.mv_refresh_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  view_name text NOT NULL,
  dag_id text,
  run_id text NOT NULL,
  data_interval_start timestamptz,
  data_interval_end timestamptz,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  duration_ms bigint NOT NULL,
  action text NOT NULL CHECK (action IN ('refreshed', 'skipped', 'failed')),
  mode text CONSTRAINT mv_refresh_log_mode_check CHECK (mode IN ('concurrent', 'plain', 'incremental', 'rebuild')),
  reason text NOT NULL,
  row_count bigint,
  -- Snapshot taken before the refresh: every source change visible in it is reflected in the view.
  covered_snapshot pg_snapshot
);
-- Summaries maintained incrementally (coldcopy.incremental) log their applies here too.
ALTER TABLE coldcopy_ops.mv_refresh_log DROP CONSTRAINT IF EXISTS mv_refresh_log_mode_check;
ALTER TABLE coldcopy_ops.mv_refresh_log ADD CONSTRAINT mv_refresh_log_mode_check
  CHECK (mode IN ('concurrent', 'plain', 'incremental', 'rebuild'));
CREATE INDEX IF NOT EXISTS mv_refresh_log_view_started_idx ON coldcopy_ops.mv_refresh_log (view_name, started_at DESC);

-- One row per (source table, writing transaction), written by a statement-level trigger. Insert-only with
-- distinct keys, so concurrent writers never wait on each other; rows of aborted transactions vanish with them.
CREATE TABLE IF NOT EXISTS coldcopy_ops.source_changes (
  relid oid NOT NULL,
  txid xid8 NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (relid, txid)
);
CREATE INDEX IF NOT EXISTS source_changes_changed_at_idx ON coldcopy_ops.source_changes (changed_at);

CREATE OR REPLACE FUNCTION coldcopy_ops.record_source_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- A write to a partition counts as a write to its partitioned table.
  INSERT INTO coldcopy_ops.source_changes (relid, txid)
  VALUES (coalesce(pg_catalog.pg_partition_root(TG_RELID), TG_RELID), pg_catalog.pg_current_xact_id())
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION coldcopy_ops.record_source_change() FROM PUBLIC;
