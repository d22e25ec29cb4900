-- 307 incremental lead intent summary: analytics.lead_intent_summary becomes a summary table maintained by group,
-- as 305 made the other five (docs/refresh.md). Its window is 90 days to the microsecond, so until now every
-- refresh recomputed every lead. A group here is one lead: an apply recomputes the leads whose signals changed
-- (captured) and those with a signal the window let go since the last apply (detected_at between the two
-- clocks' edges, read by the index below). It costs what changed and what aged out, not what exists.
--
--   analytics.lead_intent_summary_definition  301's definition: what a rebuild inserts, what the daily verify
--                                             compares with, and, filtered by lead, what an apply inserts;
--   analytics.lead_intent_summary             a table with the materialized view's name, columns and unique key,
--                                             filled from its current rows; read through the dashboard view as
--                                             306 made the others (security_invoker over forced row-level
--                                             security, read-only for the API roles).
-- squawk-ignore-file ban-concurrent-index-creation-in-transaction, require-concurrent-index-creation, prefer-robust-stmts
-- (the CONCURRENTLY build runs outside a transaction block, a part of its own; the other indexes are on a table
-- created in this same transaction, which nobody can read yet; policies are dropped before they are created.)

-- The window's edge: the signals that aged out between two applies, found without a scan.
CREATE INDEX CONCURRENTLY IF NOT EXISTS intent_signals_detected_idx ON public.intent_signals (detected_at);

CREATE OR REPLACE VIEW analytics.lead_intent_summary_definition AS
SELECT i.workspace_id,
       i.lead_id,
       count(*) AS signals,
       sum(i.strength) AS total_strength,
       max(i.detected_at) AS last_signal_at,
       array_agg(DISTINCT i.signal_type ORDER BY i.signal_type) AS signal_types
FROM public.intent_signals i
WHERE i.lead_id IS NOT NULL AND i.detected_at >= now() - interval '90 days'
GROUP BY i.workspace_id, i.lead_id;
-- It reads every workspace: the ops role's alone.
REVOKE ALL ON analytics.lead_intent_summary_definition FROM PUBLIC, anon, authenticated, service_role;

DO $$
BEGIN
  IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'analytics.lead_intent_summary'::regclass) = 'm' THEN
    CREATE TABLE analytics.lead_intent_summary_summary AS
      SELECT * FROM analytics.lead_intent_summary_definition WITH NO DATA;
    IF (SELECT relispopulated FROM pg_catalog.pg_class WHERE oid = 'analytics.lead_intent_summary'::regclass) THEN
      INSERT INTO analytics.lead_intent_summary_summary SELECT * FROM analytics.lead_intent_summary;
    END IF;
    DROP VIEW public.dashboard_lead_intent_summary;
    DROP MATERIALIZED VIEW analytics.lead_intent_summary;
    ALTER TABLE analytics.lead_intent_summary_summary RENAME TO lead_intent_summary;
    ALTER TABLE analytics.lead_intent_summary
      ADD CONSTRAINT lead_intent_summary_pkey PRIMARY KEY (lead_id, workspace_id);
    CREATE INDEX lead_intent_summary_workspace_strength_idx
      ON analytics.lead_intent_summary (workspace_id, total_strength DESC);
  END IF;
END
$$;

ALTER TABLE analytics.lead_intent_summary ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.lead_intent_summary FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspace_isolation ON analytics.lead_intent_summary;
CREATE POLICY workspace_isolation ON analytics.lead_intent_summary FOR SELECT TO authenticated
  USING ((SELECT app.is_workspace_member(workspace_id)));
DROP POLICY IF EXISTS service_role_read ON analytics.lead_intent_summary;
CREATE POLICY service_role_read ON analytics.lead_intent_summary FOR SELECT TO service_role USING (true);
REVOKE ALL ON analytics.lead_intent_summary FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON analytics.lead_intent_summary TO authenticated, service_role;

CREATE OR REPLACE VIEW public.dashboard_lead_intent_summary WITH (security_invoker = true, security_barrier = true) AS
  SELECT * FROM analytics.lead_intent_summary;
-- Supabase's default privileges give the API roles ALL on a new public view: SELECT only, and not for anon.
REVOKE ALL ON public.dashboard_lead_intent_summary FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.dashboard_lead_intent_summary TO authenticated, service_role;
