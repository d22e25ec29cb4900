-- 202 partitioning: monthly partitions of email_events and the helpers that partition rotation reuses.
--
-- A partition is created as a standalone table and then ATTACHed: ATTACH PARTITION takes SHARE UPDATE
-- EXCLUSIVE on the parent, where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and queue
-- in front of every writer. Boundaries are UTC months. There is deliberately no DEFAULT partition.

-- Start of the UTC month `month_offset` months after the one holding `ts`. Month arithmetic is done on
-- UTC wall-clock time: on timestamptz it would follow the session's time zone and its DST shifts.
CREATE OR REPLACE FUNCTION app.month_start_utc(ts timestamptz, month_offset integer DEFAULT 0)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$ SELECT (date_trunc('month', ts AT TIME ZONE 'UTC') + make_interval(months => month_offset)) AT TIME ZONE 'UTC' $$;

CREATE OR REPLACE FUNCTION app.email_events_partition_name(month timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'email_events_' || to_char(month AT TIME ZONE 'UTC', 'YYYY_MM') $$;

-- Every partition of email_events with its range; detach_pending marks an interrupted DETACH CONCURRENTLY.
CREATE OR REPLACE VIEW app.email_events_partitions AS
SELECT c.oid::regclass AS partition,
       c.relname AS name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz AS range_start,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS range_end,
       i.inhdetachpending AS detach_pending
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'public.email_events'::regclass;

-- Creates (if missing) the partition holding the UTC month of `month`; returns its name, or NULL if it existed.
CREATE OR REPLACE FUNCTION app.create_email_events_partition(month timestamptz)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  range_start timestamptz := app.month_start_utc(month);
  range_end timestamptz := app.month_start_utc(month, 1);
  part_name text := app.email_events_partition_name(range_start);
  start_literal text := to_char(range_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00';
  end_literal text := to_char(range_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00';
BEGIN
  IF EXISTS (SELECT 1 FROM app.email_events_partitions p WHERE p.name = part_name) THEN
    RETURN NULL;
  END IF;
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS public.%I (LIKE public.email_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE, '
    'CONSTRAINT %I CHECK (occurred_at >= %L AND occurred_at < %L))',
    part_name, part_name || '_range', start_literal, end_literal);
  EXECUTE format('ALTER TABLE public.email_events ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
    part_name, start_literal, end_literal);
  -- The CHECK constraint only let ATTACH skip its validation scan; the partition bound now enforces the range.
  EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', part_name, part_name || '_range');
  PERFORM app.secure_tenant_table(format('public.%I', part_name)::regclass);
  RETURN part_name;
END
$$;

-- Ensures partitions from `months_back` months before `ref` to `months_ahead` after it; returns the ones created.
CREATE OR REPLACE FUNCTION app.ensure_email_events_partitions(
  months_back integer DEFAULT 12, months_ahead integer DEFAULT 3, ref timestamptz DEFAULT now())
RETURNS SETOF text
LANGUAGE plpgsql
AS $$
DECLARE
  created text;
  offset_months integer;
BEGIN
  FOR offset_months IN -months_back .. months_ahead LOOP
    created := app.create_email_events_partition(app.month_start_utc(ref, offset_months));
    IF created IS NOT NULL THEN
      RETURN NEXT created;
    END IF;
  END LOOP;
END
$$;

SELECT count(*) AS partitions_created FROM app.ensure_email_events_partitions(12, 3);
