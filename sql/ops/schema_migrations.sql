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
-- The parts of a file that cannot run as one transaction (transactional runs of statements, and each
-- CREATE INDEX CONCURRENTLY-like statement): a retry resumes at the first part not recorded here.
CREATE TABLE IF NOT EXISTS coldcopy_ops.schema_migration_parts (
  version bigint NOT NULL,
  part integer NOT NULL,
  checksum text NOT NULL,
  transactional boolean NOT NULL,
  statements integer NOT NULL,
  lock_retries integer NOT NULL,
  duration_ms bigint NOT NULL,
  applied_by text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (version, part)
);
