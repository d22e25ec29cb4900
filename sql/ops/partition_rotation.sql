-- Archive state of email_events partitions, owned by ColdCopy DB Ops; applied by coldcopy.ops_schema.ensure().
-- One row per month that rotation has touched: exported → verified → detached → dropped (→ restored, held
-- until held_until, then verified against its existing archive → detached → dropped).

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.partition_archive (
  partition_name text PRIMARY KEY,
  range_start timestamptz NOT NULL,
  range_end timestamptz NOT NULL,
  object_key text NOT NULL,
  manifest_key text NOT NULL,
  row_count bigint NOT NULL,
  row_checksum text NOT NULL,
  sha256 text NOT NULL,
  byte_size bigint NOT NULL,
  state text NOT NULL CHECK (state IN ('exported', 'verified', 'detached', 'dropped', 'restored')),
  exported_at timestamptz NOT NULL,
  verified_at timestamptz,
  detached_at timestamptz,
  dropped_at timestamptz,
  restored_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A restored month is held attached until held_until: rotation leaves it alone until then.
ALTER TABLE coldcopy_ops.partition_archive ADD COLUMN IF NOT EXISTS restored_by text;
ALTER TABLE coldcopy_ops.partition_archive ADD COLUMN IF NOT EXISTS held_until timestamptz;
-- Rows of erased data subjects dropped when the month was restored (GDPR ledger): its next archive is a new export.
ALTER TABLE coldcopy_ops.partition_archive ADD COLUMN IF NOT EXISTS erased_rows bigint;
-- GDPR: the last erasure-ledger entry this month's archive object was scrubbed through (rewritten without the
-- erased subjects' rows), and when: an object is rewritten at most once a day, whatever the erasures.
ALTER TABLE coldcopy_ops.partition_archive ADD COLUMN IF NOT EXISTS scrubbed_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE coldcopy_ops.partition_archive ADD COLUMN IF NOT EXISTS scrubbed_at timestamptz;
