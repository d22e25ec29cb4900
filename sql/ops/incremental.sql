-- Incremental maintenance of the analytics summaries (coldcopy.refresh.incremental; docs/refresh.md).
-- Idempotent; applied by coldcopy.ops_schema.ensure() before the first incremental refresh (and again when
-- this file changes).
--
-- Capture: statement-level triggers with transition tables on each source table (and each partition of
-- email_events) append, in the writing transaction, what the statement changed, with the writer's
-- transaction id. Insert-only and without unique keys, so concurrent writers never wait on each other; an
-- aborted write's rows vanish with it. One delta table per source serves every summary that reads it.
--   email_events: a signed row per changed event (n = +1 the new image, -1 the old one; an update's images that
--   are equal in every captured column cancel out and are not written), the columns the summaries read;
--   the other sources: the ids of the changed rows.
-- Apply: coldcopy.refresh.incremental adds the signed rows to each summary's aggregate state
-- (coldcopy_ops.ivm_agg_<summary>: counts, with a hidden row count per group, and maxima) and writes the
-- groups whose figures moved (the counting method), or recomputes the changed groups from the base tables
-- (the summaries without an aggregate state); it stores the new watermark in the same transaction.

CREATE SCHEMA IF NOT EXISTS coldcopy_ops;

CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_email_events (
  txid xid8 NOT NULL,
  workspace_id uuid,
  campaign_id uuid,
  lead_id uuid,
  message_id uuid,
  email_account_id uuid,
  day date,
  event_type text
);
ALTER TABLE coldcopy_ops.ivm_delta_email_events
  ADD COLUMN IF NOT EXISTS bounce_type text,
  ADD COLUMN IF NOT EXISTS occurred_at timestamptz,
  ADD COLUMN IF NOT EXISTS n integer NOT NULL DEFAULT 1;
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_email_events_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_email_events_txid_idx ON coldcopy_ops.ivm_delta_email_events (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_campaigns (txid xid8 NOT NULL, id uuid);
-- the row's workspace, each image's (workspace_usage counts a workspace's active campaigns)
ALTER TABLE coldcopy_ops.ivm_delta_campaigns ADD COLUMN IF NOT EXISTS workspace_id uuid;
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_campaigns_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_campaigns_txid_idx ON coldcopy_ops.ivm_delta_campaigns (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_campaign_sequences (txid xid8 NOT NULL, id uuid);
ALTER TABLE coldcopy_ops.ivm_delta_campaign_sequences ADD COLUMN IF NOT EXISTS workspace_id uuid;
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_campaign_sequences_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_campaign_sequences_txid_idx ON coldcopy_ops.ivm_delta_campaign_sequences (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_email_messages (txid xid8 NOT NULL, sequence_id uuid);
ALTER TABLE coldcopy_ops.ivm_delta_email_messages ADD COLUMN IF NOT EXISTS id uuid;
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_email_messages_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_email_messages_txid_idx ON coldcopy_ops.ivm_delta_email_messages (txid);
END IF; END $$;
-- workspaces, workspace_members, leads, email_accounts: the workspace of each changed row, both images of an update
-- (workspace_usage's groups).
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_workspaces (txid xid8 NOT NULL, workspace_id uuid);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_workspaces_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_workspaces_txid_idx ON coldcopy_ops.ivm_delta_workspaces (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_intent_signals (txid xid8 NOT NULL, lead_id uuid, workspace_id uuid);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_intent_signals_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_intent_signals_txid_idx ON coldcopy_ops.ivm_delta_intent_signals (txid);
END IF; END $$;

-- One row per summary: what it reflects. watermark: every change visible in this snapshot is in the summary;
-- clock_at: the now() its clock-dependent groups were computed at; definition_sha: the checksum of the
-- definition it was built from; db_identity: the cluster and database it was built in (a watermark means
-- nothing in another cluster's transaction ids, nor after a restore into another database).
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_state (
  summary text PRIMARY KEY,
  watermark pg_snapshot NOT NULL,
  clock_at timestamptz NOT NULL,
  definition_sha text NOT NULL,
  db_identity text NOT NULL,
  rebuilt_at timestamptz NOT NULL,
  applied_at timestamptz NOT NULL,
  groups_applied bigint NOT NULL DEFAULT 0
);

-- method: how its applies work: 'delta' (its aggregate state below, proven equal to the definition when it was
-- built from it) or 'groups' (the changed groups recomputed from the definition).
ALTER TABLE coldcopy_ops.ivm_state ADD COLUMN IF NOT EXISTS method text NOT NULL DEFAULT 'groups';
-- first_day: a per-day state's first day held (workspace_usage's), set by its rebuild and each day dropped; NULL: the
-- window's first day at clock_at (the state was built then).
ALTER TABLE coldcopy_ops.ivm_state ADD COLUMN IF NOT EXISTS first_day date;

-- The aggregate state of the summaries maintained by deltas (coldcopy.refresh.incremental.aggregates): per
-- group, `rows` (the hidden count: the group goes when it reaches 0), each count the summary shows or derives
-- a figure from, and the maxima. Written only by an apply, which holds the summary's row of ivm_apply_locks.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_daily_workspace_activity (
  workspace_id uuid NOT NULL, day date NOT NULL, event_type text NOT NULL,
  rows bigint NOT NULL,
  PRIMARY KEY (workspace_id, day, event_type)
);
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_email_deliverability (
  email_account_id uuid NOT NULL, day date NOT NULL, workspace_id uuid NOT NULL,
  rows bigint NOT NULL, sent bigint NOT NULL, delivered bigint NOT NULL, bounced bigint NOT NULL,
  hard_bounces bigint NOT NULL, complaints bigint NOT NULL,
  PRIMARY KEY (email_account_id, day, workspace_id)
);
-- Keyed by the events' campaign and workspace: a campaign counts only its own workspace's events (306).
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_campaign_analytics (
  campaign_id uuid NOT NULL, workspace_id uuid NOT NULL,
  rows bigint NOT NULL, sent bigint NOT NULL, delivered bigint NOT NULL, replied bigint NOT NULL,
  bounced bigint NOT NULL, complained bigint NOT NULL, opened bigint NOT NULL, clicked bigint NOT NULL,
  last_event_at timestamptz,
  PRIMARY KEY (campaign_id, workspace_id)
);
-- How many of a campaign's opened (clicked) events name each message: its distinct count moves when one
-- crosses 0 <-> 1.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_mult_campaign_analytics (
  campaign_id uuid NOT NULL, workspace_id uuid NOT NULL, kind text NOT NULL, value uuid NOT NULL, n bigint NOT NULL,
  PRIMARY KEY (campaign_id, workspace_id, kind, value)
);
-- sequence_step_performance (events ⋈ messages ⋈ steps): per message, its opened and replied events by the
-- events' workspace; per outbound message in a step, that step and its workspace; per step (and the messages'
-- workspace), how many messages, how many of them opened, replied.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_msg_events (
  message_id uuid NOT NULL, workspace_id uuid NOT NULL, opened bigint NOT NULL, replied bigint NOT NULL,
  PRIMARY KEY (message_id, workspace_id)
);
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_msg_steps (
  message_id uuid PRIMARY KEY, workspace_id uuid NOT NULL, sequence_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_sequence_step_performance (
  sequence_id uuid NOT NULL, workspace_id uuid NOT NULL,
  messages_sent bigint NOT NULL, opened bigint NOT NULL, replied bigint NOT NULL,
  PRIMARY KEY (sequence_id, workspace_id)
);
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_lead_engagement (
  lead_id uuid NOT NULL, workspace_id uuid NOT NULL,
  rows bigint NOT NULL, emails_sent bigint NOT NULL, opens bigint NOT NULL, clicks bigint NOT NULL,
  replies bigint NOT NULL, last_engaged_at timestamptz,
  PRIMARY KEY (lead_id, workspace_id)
);

-- workspace_usage: the sent events per workspace and UTC day of the last 31 days (its windows: this month, 30 days).
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_agg_workspace_usage (
  workspace_id uuid NOT NULL, day date NOT NULL,
  rows bigint NOT NULL,
  PRIMARY KEY (workspace_id, day)
);

-- Every verification of a summary against its definition.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_verifications (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  summary text NOT NULL,
  verified_at timestamptz NOT NULL DEFAULT now(),
  duration_ms bigint NOT NULL,
  summary_rows bigint NOT NULL,
  missing_rows bigint NOT NULL,  -- in the definition, not in the summary
  extra_rows bigint NOT NULL,    -- in the summary, not in the definition
  repaired boolean NOT NULL
);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_verifications_summary_idx') IS NULL THEN
  CREATE INDEX ivm_verifications_summary_idx ON coldcopy_ops.ivm_verifications (summary, verified_at DESC);
END IF; END $$;

-- Whether a capture's delta table is gone (dropped by hand, a restore that left it out): then the source is noted
-- in ivm_rebuild_due, so every summary reading it rebuilds, and the application's write goes on uncaptured.
-- Called by the capture functions, as their owner; nobody else.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_delta_lost(delta pg_catalog.text, source pg_catalog.text)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.to_regclass(delta) IS NOT NULL THEN
    RETURN false;
  END IF;
  IF pg_catalog.to_regclass('coldcopy_ops.ivm_rebuild_due') IS NOT NULL THEN
    INSERT INTO coldcopy_ops.ivm_rebuild_due (source, reason) VALUES (source, 'a write found ' || delta || ' missing');
  END IF;
  RETURN true;
END
$$;

-- A TRUNCATE's capture reads the rows it removes under the transaction's snapshot: in REPEATABLE READ or
-- SERIALIZABLE that snapshot may predate rows committed since, which the TRUNCATE removes all the same and the
-- capture would miss. There the summaries reading `source` are marked due for a rebuild instead (true).
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_truncate_unseen(source pg_catalog.text)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.=) 'read committed' THEN
    RETURN false;
  END IF;
  IF pg_catalog.to_regclass('coldcopy_ops.ivm_rebuild_due') IS NOT NULL THEN
    INSERT INTO coldcopy_ops.ivm_rebuild_due (source, reason) VALUES (source, pg_catalog.format(
      'a TRUNCATE of %s in a %s transaction, whose snapshot may miss rows it removed', source,
      pg_catalog.current_setting('transaction_isolation')));
  END IF;
  RETURN true;
END
$$;

-- The partitions of email_events whose rows the capture counts: a month is counted in when it is attached (or
-- made, empty) and out when it is detached, once each (the record below is idempotent by this set), and a
-- statement straight into a partition is captured only while it is counted (a detached month's writes, say
-- an erasure in its grace period, are not the summaries'). The apply's check compares it with the partitions
-- attached: a month attached or detached without its record (a plain ATTACH, a job killed between its DETACH
-- and its record) makes every summary of email_events rebuild once, and the set is reset to what is attached.
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_months (relid oid PRIMARY KEY);

-- Every row of an email_events table counted in (+1) or out (-1) as the current transaction's change. Exact in
-- READ COMMITTED only: under a REPEATABLE READ or SERIALIZABLE snapshot, rows committed after it (which a
-- TRUNCATE removes all the same) would go uncounted, so there the summaries are marked due for a rebuild.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_count_email_events(rel regclass, sign integer)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF sign NOT IN (-1, 1) THEN
    RAISE EXCEPTION 'sign must be -1 or 1, not %', sign;
  END IF;
  IF pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' THEN
    INSERT INTO coldcopy_ops.ivm_rebuild_due (source, reason) VALUES ('public.email_events', pg_catalog.format(
      'the rows of %s counted %s in a %s transaction, whose snapshot may miss some', rel,
      CASE sign WHEN 1 THEN 'in' ELSE 'out' END, pg_catalog.current_setting('transaction_isolation')));
    RETURN;
  END IF;
  EXECUTE pg_catalog.format(
    'INSERT INTO coldcopy_ops.ivm_delta_email_events (txid, workspace_id, campaign_id, lead_id, message_id, '
    'email_account_id, day, event_type, bounce_type, occurred_at, n) SELECT pg_catalog.pg_current_xact_id(), '
    'workspace_id, campaign_id, lead_id, message_id, email_account_id, (occurred_at AT TIME ZONE ''UTC'')::pg_catalog.date, '
    'event_type, bounce_type, occurred_at, %s FROM %s', sign, rel);
END
$$;

-- A month counted in (+1: attached) or out (-1: detached), once: nothing when it already is.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_record_email_events(rel regclass, sign integer)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF (SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) rel) = 'p' THEN
    RETURN;  -- a partitioned table: its partitions are the months
  END IF;
  IF sign = 1 THEN
    INSERT INTO coldcopy_ops.ivm_months (relid) VALUES (rel) ON CONFLICT DO NOTHING;
  ELSIF sign = -1 THEN
    DELETE FROM coldcopy_ops.ivm_months WHERE relid OPERATOR(pg_catalog.=) rel;
  ELSE
    RAISE EXCEPTION 'sign must be -1 or 1, not %', sign;
  END IF;
  IF FOUND THEN
    PERFORM coldcopy_ops.ivm_count_email_events(rel, sign);
  END IF;
END
$$;

-- The sign from whether `rel` is a partition of email_events now.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_record_email_events(rel regclass)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM coldcopy_ops.ivm_record_email_events(rel, CASE WHEN EXISTS (
    SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid OPERATOR(pg_catalog.=) rel
      AND i.inhparent OPERATOR(pg_catalog.=) pg_catalog.to_regclass('public.email_events')) THEN 1 ELSE -1 END);
END
$$;

CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_email_events()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- (the application's every insert runs this: the delta table's presence looked up here, ivm_delta_lost called
  -- only when it is gone; the parent told by name, no catalog lookup)
  IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_email_events') IS NULL THEN
    IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_email_events', 'public.email_events') THEN
      RETURN NULL;  -- the write goes on, the summaries rebuild
    END IF;
  END IF;
  IF TG_TABLE_NAME OPERATOR(pg_catalog.<>) 'email_events' OR TG_TABLE_SCHEMA OPERATOR(pg_catalog.<>) 'public' THEN  -- straight into a month
    IF pg_catalog.to_regclass('coldcopy_ops.ivm_months') IS NULL THEN  -- dropped by hand: the write goes on
      IF pg_catalog.to_regclass('coldcopy_ops.ivm_rebuild_due') IS NOT NULL THEN
        INSERT INTO coldcopy_ops.ivm_rebuild_due (source, reason)
        VALUES ('public.email_events', 'a write found coldcopy_ops.ivm_months missing');
      END IF;
    ELSIF NOT EXISTS (SELECT 1 FROM coldcopy_ops.ivm_months m WHERE m.relid OPERATOR(pg_catalog.=) TG_RELID) THEN
      RETURN NULL;  -- a table whose rows are not counted (a detached month): not the summaries' change
    END IF;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_events (txid, workspace_id, campaign_id, lead_id, message_id,
      email_account_id, day, event_type, bounce_type, occurred_at, n)
    SELECT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id, email_account_id,
           (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type, bounce_type, occurred_at, 1 FROM ivm_new;
  ELSIF TG_OP = 'UPDATE' THEN  -- old images -1, new +1; what the update left equal in every captured column cancels
    INSERT INTO coldcopy_ops.ivm_delta_email_events (txid, workspace_id, campaign_id, lead_id, message_id,
      email_account_id, day, event_type, bounce_type, occurred_at, n)
    SELECT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id, email_account_id,
           (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type, bounce_type, occurred_at,
           pg_catalog.sum(n)::pg_catalog.int4
    FROM (SELECT workspace_id, campaign_id, lead_id, message_id, email_account_id, event_type, bounce_type,
                 occurred_at, -1 AS n FROM ivm_old
          UNION ALL
          SELECT workspace_id, campaign_id, lead_id, message_id, email_account_id, event_type, bounce_type,
                 occurred_at, 1 FROM ivm_new) r
    GROUP BY workspace_id, campaign_id, lead_id, message_id, email_account_id, event_type, bounce_type, occurred_at
    HAVING pg_catalog.sum(n) OPERATOR(pg_catalog.<>) 0;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_events (txid, workspace_id, campaign_id, lead_id, message_id,
      email_account_id, day, event_type, bounce_type, occurred_at, n)
    SELECT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id, email_account_id,
           (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type, bounce_type, occurred_at, -1 FROM ivm_old;
  ELSIF TG_RELID OPERATOR(pg_catalog.<>) pg_catalog.to_regclass('public.email_events') THEN
    PERFORM coldcopy_ops.ivm_count_email_events(TG_RELID, -1);  -- BEFORE TRUNCATE: the month's rows about to go
    -- (the parent's own TRUNCATE trigger records nothing: each partition's counts its rows)
  END IF;
  RETURN NULL;
END
$$;

-- campaigns and campaign_sequences: a summary group per row id.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_ids()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  delta pg_catalog.text := CASE TG_TABLE_NAME WHEN 'campaigns' THEN 'ivm_delta_campaigns'
                                   WHEN 'campaign_sequences' THEN 'ivm_delta_campaign_sequences' END;
  rows pg_catalog.text := CASE TG_OP WHEN 'INSERT' THEN 'SELECT id, workspace_id FROM ivm_new'
                          WHEN 'UPDATE' THEN 'SELECT id, workspace_id FROM ivm_old UNION SELECT id, workspace_id FROM ivm_new'
                          WHEN 'DELETE' THEN 'SELECT id, workspace_id FROM ivm_old'
                          ELSE pg_catalog.format('SELECT id, workspace_id FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME) END;
BEGIN
  IF coldcopy_ops.ivm_delta_lost(pg_catalog.format('coldcopy_ops.%I', delta), pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' AND coldcopy_ops.ivm_truncate_unseen(pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN
    RETURN NULL;
  END IF;
  EXECUTE pg_catalog.format('INSERT INTO coldcopy_ops.%I (txid, id, workspace_id) '
                            'SELECT DISTINCT pg_catalog.pg_current_xact_id(), id, workspace_id FROM (%s) r', delta, rows);
  RETURN NULL;
END
$$;

-- workspaces, workspace_members, leads, email_accounts: the workspace of each changed row (a workspace's own id).
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_workspace_ids()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  key pg_catalog.text := CASE TG_TABLE_NAME WHEN 'workspaces' THEN 'id' ELSE 'workspace_id' END;
  rows pg_catalog.text := CASE TG_OP WHEN 'INSERT' THEN 'SELECT %1$I AS w FROM ivm_new'
                          WHEN 'UPDATE' THEN 'SELECT %1$I AS w FROM ivm_old UNION SELECT %1$I FROM ivm_new'
                          WHEN 'DELETE' THEN 'SELECT %1$I AS w FROM ivm_old'
                          ELSE 'SELECT %1$I AS w FROM %2$I.%3$I' END;
BEGIN
  IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_workspaces', pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' AND coldcopy_ops.ivm_truncate_unseen(pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN
    RETURN NULL;
  END IF;
  EXECUTE 'INSERT INTO coldcopy_ops.ivm_delta_workspaces (txid, workspace_id) SELECT DISTINCT '
          'pg_catalog.pg_current_xact_id(), w FROM (' || pg_catalog.format(rows, key, TG_TABLE_SCHEMA, TG_TABLE_NAME)
          || ') r WHERE w IS NOT NULL';
  RETURN NULL;
END
$$;

-- campaigns and campaign_sequences, an UPDATE: a row trigger whose WHEN names the columns the summaries' definitions
-- read (coldcopy.refresh.incremental.update_filter), so an update of any other column (updated_at: the
-- application touches a campaign on every send) calls nothing; a row that does move records its id, both ids when
-- the id itself changed.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_changed_id()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  delta pg_catalog.text := CASE TG_TABLE_NAME WHEN 'campaigns' THEN 'ivm_delta_campaigns'
                             WHEN 'campaign_sequences' THEN 'ivm_delta_campaign_sequences'
                             ELSE 'ivm_delta_workspaces' END;
BEGIN
  IF pg_catalog.to_regclass(pg_catalog.format('coldcopy_ops.%I', delta)) IS NULL
     AND coldcopy_ops.ivm_delta_lost(pg_catalog.format('coldcopy_ops.%I', delta), pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN
    RETURN NULL;
  END IF;
  IF delta OPERATOR(pg_catalog.=) 'ivm_delta_workspaces' THEN  -- the workspace of each image (a workspace's own id)
    EXECUTE pg_catalog.format('INSERT INTO coldcopy_ops.ivm_delta_workspaces (txid, workspace_id) SELECT DISTINCT '
                              'pg_catalog.pg_current_xact_id(), w FROM (VALUES ($1.%1$I), ($2.%1$I)) v(w) '
                              'WHERE w IS NOT NULL',
                              CASE TG_TABLE_NAME WHEN 'workspaces' THEN 'id' ELSE 'workspace_id' END) USING OLD, NEW;
  ELSE  -- the row's id and workspace, each image's
    EXECUTE pg_catalog.format('INSERT INTO coldcopy_ops.%I (txid, id, workspace_id) SELECT DISTINCT '
                              'pg_catalog.pg_current_xact_id(), i, w FROM (VALUES ($1.id, $1.workspace_id), '
                              '($2.id, $2.workspace_id)) v(i, w)', delta) USING OLD, NEW;
  END IF;
  RETURN NULL;
END
$$;

-- email_messages: each changed message (both images of an update) with its step.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_email_messages()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_email_messages', 'public.email_messages') THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' AND coldcopy_ops.ivm_truncate_unseen('public.email_messages') THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages (txid, id, sequence_id)
    SELECT pg_catalog.pg_current_xact_id(), id, sequence_id FROM ivm_new;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages (txid, id, sequence_id)
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), id, sequence_id
    FROM (SELECT id, sequence_id FROM ivm_old UNION SELECT id, sequence_id FROM ivm_new) r;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages (txid, id, sequence_id)
    SELECT pg_catalog.pg_current_xact_id(), id, sequence_id FROM ivm_old;
  ELSE
    INSERT INTO coldcopy_ops.ivm_delta_email_messages (txid, id, sequence_id)
    SELECT pg_catalog.pg_current_xact_id(), id, sequence_id FROM public.email_messages;
  END IF;
  RETURN NULL;
END
$$;

-- intent_signals: the (lead, workspace) of each changed signal, both images of an update (lead_intent_summary's
-- groups); a TRUNCATE (BEFORE: the rows still there) every lead's.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_intent_signals()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rows pg_catalog.text := CASE TG_OP WHEN 'INSERT' THEN 'SELECT lead_id, workspace_id FROM ivm_new'
                          WHEN 'UPDATE' THEN 'SELECT lead_id, workspace_id FROM ivm_old UNION '
                                             'SELECT lead_id, workspace_id FROM ivm_new'
                          WHEN 'DELETE' THEN 'SELECT lead_id, workspace_id FROM ivm_old'
                          ELSE 'SELECT lead_id, workspace_id FROM public.intent_signals' END;
BEGIN
  IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_intent_signals', 'public.intent_signals') THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' AND coldcopy_ops.ivm_truncate_unseen('public.intent_signals') THEN
    RETURN NULL;
  END IF;
  EXECUTE 'INSERT INTO coldcopy_ops.ivm_delta_intent_signals (txid, lead_id, workspace_id) '
          'SELECT DISTINCT pg_catalog.pg_current_xact_id(), lead_id, workspace_id FROM (' || rows || ') r '
          'WHERE lead_id IS NOT NULL';
  RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION coldcopy_ops.ivm_record_email_events(regclass),
  coldcopy_ops.ivm_count_email_events(regclass, integer),
  coldcopy_ops.ivm_record_email_events(regclass, integer),
  coldcopy_ops.ivm_delta_lost(text, text), coldcopy_ops.ivm_truncate_unseen(text),
  coldcopy_ops.ivm_capture_email_events(),
  coldcopy_ops.ivm_capture_ids(), coldcopy_ops.ivm_capture_workspace_ids(), coldcopy_ops.ivm_capture_changed_id(), coldcopy_ops.ivm_capture_intent_signals(),
  coldcopy_ops.ivm_capture_email_messages() FROM PUBLIC;
REVOKE ALL ON coldcopy_ops.ivm_delta_email_events, coldcopy_ops.ivm_delta_campaigns,
  coldcopy_ops.ivm_delta_campaign_sequences, coldcopy_ops.ivm_delta_email_messages, coldcopy_ops.ivm_state,
  coldcopy_ops.ivm_verifications, coldcopy_ops.ivm_agg_daily_workspace_activity,
  coldcopy_ops.ivm_agg_email_deliverability, coldcopy_ops.ivm_agg_lead_engagement,
  coldcopy_ops.ivm_agg_campaign_analytics, coldcopy_ops.ivm_mult_campaign_analytics, coldcopy_ops.ivm_msg_events,
  coldcopy_ops.ivm_msg_steps, coldcopy_ops.ivm_agg_sequence_step_performance, coldcopy_ops.ivm_months,
  coldcopy_ops.ivm_delta_intent_signals, coldcopy_ops.ivm_delta_workspaces, coldcopy_ops.ivm_agg_workspace_usage
  FROM PUBLIC;
