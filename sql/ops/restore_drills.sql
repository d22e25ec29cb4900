-- Restore drills (restore_drill, coldcopy.pitr.drills): one row per drill, what db_health, the health page and the
-- metrics read. Applied by coldcopy.ops_schema.ensure().

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.restore_drills (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('passed', 'failed')),
  error text,
  as_of timestamptz,
  backup_key text,
  chain text,
  segments integer,
  verify_server text,          -- host:port of the server it ran on (never the live one)
  jobs integer,                -- pg_restore --jobs
  rto_s double precision,      -- start to a usable, checked database: the phases below added up
  download_s double precision, -- the base backup, spooled and bound to its manifest
  restore_s double precision,  -- decrypt and pg_restore
  replay_s double precision,   -- the change archive up to as_of (segments fetched, bound, applied)
  verify_s double precision,   -- the restored rows against the archive
  erasures_s double precision, -- the erasure ledger re-applied
  rpo_s double precision,      -- achieved RPO at as_of: age of the oldest commit not yet archived then
  at_risk_transactions integer,-- commits before as_of still outside the archive then
  budget_s double precision,   -- the RTO budget in force (Variable coldcopy_restore_drill_rto_budget_s)
  bytes bigint,                -- downloaded: the base backup and the segments
  rows bigint,                 -- rows in the restored database
  changes_replayed bigint,
  checks jsonb                 -- per table: counts expected/restored, sampled keys and how many differed
);

CREATE INDEX IF NOT EXISTS restore_drills_finished_idx ON coldcopy_ops.restore_drills (finished_at DESC);
