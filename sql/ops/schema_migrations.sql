-- History of applied schema migrations, owned by ColdCopy DB Ops; applied by coldcopy.ops_schema.ensure().

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  phase integer NOT NULL,
  checksum text NOT NULL,
  transactional boolean NOT NULL,
  lock_retries integer NOT NULL,
  duration_ms bigint NOT NULL,
  applied_by text NOT NULL,
  started_at timestamptz NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- The Supabase CLI's versions are 14-digit timestamps (supabase/migrations/): bigint (a no-op once it is).
ALTER TABLE coldcopy_ops.schema_migrations ALTER COLUMN version TYPE bigint;
