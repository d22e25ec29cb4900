-- What keeps the incremental summaries honest (coldcopy.incremental; docs/refresh.md). Idempotent; applied by
-- coldcopy.ops_schema.ensure() with incremental.sql, before every apply.
--
-- ivm_apply_locks: one row per summary. An apply or verify holds its row FOR UPDATE SKIP LOCKED for its
-- transaction (a second one finds it taken and is busy at once; a killed holder's lock goes with its
-- transaction). Row locks and LOCK TABLE need UPDATE or more on the table and PUBLIC has nothing here: unlike an
-- advisory lock's key, no other login can take it and freeze the summaries.
CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_apply_locks (summary text PRIMARY KEY);

-- ivm_rebuild_due: a summary rebuilds at its next apply, because changes of `source` went uncaptured: its capture
-- was found switched off or its delta table missing, a table was restored or replayed with triggers off.
-- summary NULL: every summary reading source (the next apply's capture check writes one row per summary).
-- An apply whose snapshot sees a row of its summary rebuilds and deletes it in the same transaction; a row
-- written after its snapshot stays for the next apply.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_rebuild_due (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  summary text,
  source text NOT NULL,
  reason text NOT NULL,
  noted_at timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON coldcopy_ops.ivm_apply_locks, coldcopy_ops.ivm_rebuild_due FROM PUBLIC;
