-- The change archive's progress, owned by ColdCopy DB Ops; applied by coldcopy.ops_schema.ensure().
-- One row per slot: what db_health reads for the archive's lag, and where a broken chain is recorded.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.change_archive (
  slot text PRIMARY KEY,
  chain text NOT NULL,
  seq bigint NOT NULL DEFAULT 0,            -- newest verified segment
  end_lsn pg_lsn,                           -- the slot was advanced to here
  drained_at timestamptz,                   -- every commit before this is in a verified segment
  last_lag_s double precision,              -- the oldest commit of the last segment, seconds before it was verified
  broken_at timestamptz,                    -- the slot was dropped: the chain ends at drained_at
  broken_reason text,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The anchor outside the bucket (issue 31): the newest verified segment's hash, so a bucket whose newest
-- segments were deleted (or replaced) is refused before the archive extends it; the refusal, for db_health.
ALTER TABLE coldcopy_ops.change_archive ADD COLUMN IF NOT EXISTS segment_hash text;
ALTER TABLE coldcopy_ops.change_archive ADD COLUMN IF NOT EXISTS anchor_problem text;
ALTER TABLE coldcopy_ops.change_archive ADD COLUMN IF NOT EXISTS anchor_problem_at timestamptz;
