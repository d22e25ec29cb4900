-- Incremental maintenance of the analytics summaries (coldcopy.incremental; docs/refresh.md).
-- Idempotent; applied by coldcopy.ops_schema.ensure() before the first incremental refresh.
--
-- Capture: statement-level triggers with transition tables on each source table (and each partition of
-- email_events) append, in the writing transaction, the group keys the statement touched — old and new
-- values of an update, the whole table before a TRUNCATE — with the writer's transaction id. Insert-only
-- and without unique keys, so concurrent writers never wait on each other; an aborted write's keys vanish
-- with it. One delta table per source holds the keys of every summary that reads it.
-- Apply: coldcopy.incremental recomputes the groups whose keys are pending (not visible in the summary's
-- watermark snapshot), replaces them, and stores the new watermark in the same transaction.

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
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_email_events_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_email_events_txid_idx ON coldcopy_ops.ivm_delta_email_events (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_campaigns (txid xid8 NOT NULL, id uuid);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_campaigns_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_campaigns_txid_idx ON coldcopy_ops.ivm_delta_campaigns (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_campaign_sequences (txid xid8 NOT NULL, id uuid);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_campaign_sequences_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_campaign_sequences_txid_idx ON coldcopy_ops.ivm_delta_campaign_sequences (txid);
END IF; END $$;
CREATE TABLE IF NOT EXISTS coldcopy_ops.ivm_delta_email_messages (txid xid8 NOT NULL, sequence_id uuid);
DO $$ BEGIN IF pg_catalog.to_regclass('coldcopy_ops.ivm_delta_email_messages_txid_idx') IS NULL THEN
  CREATE INDEX ivm_delta_email_messages_txid_idx ON coldcopy_ops.ivm_delta_email_messages (txid);
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

-- The keys of every row of an email_events table (the whole table before a TRUNCATE; a month when it is attached
-- or detached, which no DML trigger sees), as the current transaction's change.
CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_record_email_events(rel regclass)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  EXECUTE pg_catalog.format(
    'INSERT INTO coldcopy_ops.ivm_delta_email_events SELECT DISTINCT pg_catalog.pg_current_xact_id(), '
    'workspace_id, campaign_id, lead_id, message_id, email_account_id, (occurred_at AT TIME ZONE ''UTC'')::pg_catalog.date, '
    'event_type FROM %s', rel);
END
$$;

CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_email_events()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_email_events', 'public.email_events') THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_events
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id,
           email_account_id, (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type FROM ivm_new;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_events
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id,
           email_account_id, (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type
    FROM (SELECT * FROM ivm_old UNION ALL SELECT * FROM ivm_new) r;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_events
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), workspace_id, campaign_id, lead_id, message_id,
           email_account_id, (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date, event_type FROM ivm_old;
  ELSE  -- BEFORE TRUNCATE: the rows about to go
    PERFORM coldcopy_ops.ivm_record_email_events(TG_RELID);
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
  rows pg_catalog.text := CASE TG_OP WHEN 'INSERT' THEN 'SELECT id FROM ivm_new'
                          WHEN 'UPDATE' THEN 'SELECT id FROM ivm_old UNION SELECT id FROM ivm_new'
                          WHEN 'DELETE' THEN 'SELECT id FROM ivm_old'
                          ELSE pg_catalog.format('SELECT id FROM %I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME) END;
BEGIN
  IF coldcopy_ops.ivm_delta_lost(pg_catalog.format('coldcopy_ops.%I', delta), pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME)) THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  EXECUTE pg_catalog.format('INSERT INTO coldcopy_ops.%I SELECT DISTINCT pg_catalog.pg_current_xact_id(), id FROM (%s) r',
                            delta, rows);
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION coldcopy_ops.ivm_capture_email_messages()
RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coldcopy_ops.ivm_delta_lost('coldcopy_ops.ivm_delta_email_messages', 'public.email_messages') THEN  -- the write goes on, the summaries rebuild
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), sequence_id FROM ivm_new WHERE sequence_id IS NOT NULL;
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), sequence_id
    FROM (SELECT sequence_id FROM ivm_old UNION SELECT sequence_id FROM ivm_new) r WHERE sequence_id IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO coldcopy_ops.ivm_delta_email_messages
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), sequence_id FROM ivm_old WHERE sequence_id IS NOT NULL;
  ELSE
    INSERT INTO coldcopy_ops.ivm_delta_email_messages
    SELECT DISTINCT pg_catalog.pg_current_xact_id(), sequence_id FROM public.email_messages WHERE sequence_id IS NOT NULL;
  END IF;
  RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION coldcopy_ops.ivm_record_email_events(regclass),
  coldcopy_ops.ivm_delta_lost(text, text), coldcopy_ops.ivm_capture_email_events(),
  coldcopy_ops.ivm_capture_ids(),
  coldcopy_ops.ivm_capture_email_messages() FROM PUBLIC;
REVOKE ALL ON coldcopy_ops.ivm_delta_email_events, coldcopy_ops.ivm_delta_campaigns,
  coldcopy_ops.ivm_delta_campaign_sequences, coldcopy_ops.ivm_delta_email_messages, coldcopy_ops.ivm_state,
  coldcopy_ops.ivm_verifications FROM PUBLIC;
