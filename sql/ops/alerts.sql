-- Pages already sent, so one mistake pages once (issue 41): a task failure of a DAG with the same error within the
-- window (every task of a run failing on one bad setting; a catch-up run failing as the scheduled one did) is
-- logged, not sent again. One row per DAG and error; owned by ColdCopy DB Ops.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.alert_sent (
  dedupe_key text PRIMARY KEY,  -- kind | dag_id | error
  sent_at timestamptz NOT NULL,
  run_id text,
  task_id text,
  repeats integer NOT NULL DEFAULT 0  -- muted since sent_at
);
