-- History of the db_health checks and the alerting state of each, owned by ColdCopy DB Ops.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

-- One row per check per run (every 10 minutes); pruned after 90 days by the job. The health page reads only this.
CREATE TABLE IF NOT EXISTS coldcopy_ops.health_snapshot (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  check_name text NOT NULL,
  taken_at timestamptz NOT NULL DEFAULT now(),
  state text NOT NULL CHECK (state IN ('ok', 'warning', 'breach', 'unknown')),
  value double precision,  -- the check's key figure (charted); higher is worse
  unit text,
  summary text NOT NULL,
  details jsonb NOT NULL DEFAULT '{}',
  run_id text
);
CREATE INDEX IF NOT EXISTS health_snapshot_check_taken_idx ON coldcopy_ops.health_snapshot (check_name, taken_at DESC);
CREATE INDEX IF NOT EXISTS health_snapshot_taken_brin ON coldcopy_ops.health_snapshot USING brin (taken_at);

-- What on-call was last told about each check: alerts go out on entering a breach, when it gets worse, as a
-- reminder, and once when it clears; never on every run.
CREATE TABLE IF NOT EXISTS coldcopy_ops.health_alert_state (
  check_name text PRIMARY KEY,
  state text NOT NULL CHECK (state IN ('ok', 'warning', 'breach')),
  since timestamptz NOT NULL,
  alerted_at timestamptz,
  alerted_state text,
  alerted_value double precision
);

-- The latest snapshot of each check: the health page reads the current state without scanning the history.
CREATE TABLE IF NOT EXISTS coldcopy_ops.health_latest (
  check_name text PRIMARY KEY,
  snapshot_id bigint NOT NULL
);
