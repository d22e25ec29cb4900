-- Every vacuum / freeze / reindex / analyze / cache purge action, owned by ColdCopy DB Ops.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.maintenance_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  action text NOT NULL,  -- vacuum | vacuum_freeze | vacuum_full | reindex | drop_invalid_index | analyze | purge_cache
  target text NOT NULL,
  dag_id text,
  run_id text,
  started_at timestamptz NOT NULL,
  duration_ms bigint NOT NULL,
  size_before bigint,
  size_after bigint,
  outcome text NOT NULL CHECK (outcome IN ('done', 'skipped', 'failed', 'reported')),
  detail text
);
CREATE INDEX IF NOT EXISTS maintenance_log_action_target_idx ON coldcopy_ops.maintenance_log (action, target, started_at DESC);
