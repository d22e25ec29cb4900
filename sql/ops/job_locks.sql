-- Locks of the ops jobs that must never run twice at once (coldcopy.job_locks; docs/safety.md, "Locks no other
-- login can take"). Idempotent; applied by coldcopy.ops_schema.ensure() before the first lock.
--
-- job_locks: one row per lock name (a detach from email_events, a migration run, an erasure of one subject…).
-- A job holds its row FOR UPDATE: in its own transaction, or in an open transaction of a side connection for work
-- spanning several transactions; either way the lock goes when the holder's transaction or connection ends.
-- Row locks need UPDATE (or more) on the table and PUBLIC has nothing here: unlike an advisory lock's key, which
-- any login can compute from the repository and hold, no other login can take one and stall the job.
CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.job_locks (name text PRIMARY KEY);

REVOKE ALL ON coldcopy_ops.job_locks FROM PUBLIC;
