-- Backup history and restore verifications, owned by ColdCopy DB Ops; applied by coldcopy.ops_schema.ensure().

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.backup_log (
  object_key text PRIMARY KEY,
  manifest_key text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('database', 'tables')),
  tables text[],
  retention_class text NOT NULL CHECK (retention_class IN ('standard', 'compliance')),
  byte_size bigint NOT NULL,
  sha256 text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL,
  verification text NOT NULL DEFAULT 'pending' CHECK (verification IN ('pending', 'verified', 'failed')),
  verified_at timestamptz,
  verification_ms bigint,
  verification_error text,
  deleted_at timestamptz
);
