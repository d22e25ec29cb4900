-- Schema drift (schema_drift DAG, coldcopy.migrations.drift): one row per check, what db_health, the health page and
-- the metrics read. The differences hold catalog definitions only (no row of any table). Applied by
-- coldcopy.ops_schema.ensure().

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.schema_drift (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  checked_at timestamptz NOT NULL DEFAULT now(),
  outcome text NOT NULL CHECK (outcome IN ('checked', 'unknown')),
  error text,                    -- why it could not be checked (no verify server, an applied file changed)
  objects integer,               -- live's objects compared
  drifted integer,               -- objects that differ
  breaches integer,              -- of them, security-relevant
  new_objects text[],            -- drifted now and not at the previous check (what was alerted)
  differences jsonb,             -- per object: kind, name, change, fields, expected/live, the SQL to either side
  files integer,                 -- applied files the expected schema was built from
  expected_s double precision,   -- building it on the verify server
  live_s double precision        -- reading live's catalog
);
CREATE INDEX IF NOT EXISTS schema_drift_checked_idx ON coldcopy_ops.schema_drift (checked_at DESC);
REVOKE ALL ON coldcopy_ops.schema_drift FROM PUBLIC;
