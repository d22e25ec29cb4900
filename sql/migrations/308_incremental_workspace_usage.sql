-- 308 incremental workspace usage: analytics.workspace_usage, the last materialized view of the dashboards, becomes
-- a summary table maintained by deltas (docs/refresh.md), as 305 and 307 made the other six. Its two windows move
-- with the clock: e-mails sent this month (from a UTC month's first midnight) and in the last 30 days (to the
-- microsecond). Until now every refresh counted every workspace's sent events of a month again.
--
--   analytics.workspace_usage_definition  201's definition: what a rebuild proves the state equal to and what the
--                                         daily verify compares with;
--   analytics.workspace_usage             a table with the materialized view's name, columns and unique key,
--                                         filled from its current rows; read through the dashboard view as 307
--                                         made lead_intent_summary's (security_invoker over forced row-level
--                                         security, read-only for the API roles).
--
-- An apply adds the sent events that changed to a per-(workspace, UTC day) state of the last 31 days
-- (coldcopy_ops.ivm_agg_workspace_usage); a window is the sum of its whole days plus, for the 30 days, the sent
-- events of the one day the window's edge cuts (an index range). The member, lead, campaign and account counts
-- are recounted for the workspaces whose rows changed (captured), not for all.

CREATE OR REPLACE VIEW analytics.workspace_usage_definition AS
SELECT w.id AS workspace_id,
       w.plan,
       w.monthly_email_quota,
       (SELECT count(*) FROM public.workspace_members m WHERE m.workspace_id = w.id AND m.status = 'active') AS active_members,
       (SELECT count(*) FROM public.leads l WHERE l.workspace_id = w.id) AS leads,
       (SELECT count(*) FROM public.campaigns c WHERE c.workspace_id = w.id AND c.status = 'active') AS active_campaigns,
       (SELECT count(*) FROM public.email_accounts a WHERE a.workspace_id = w.id) AS email_accounts,
       (SELECT count(*) FROM public.email_events e
         WHERE e.workspace_id = w.id AND e.event_type = 'sent'
           AND e.occurred_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS emails_sent_this_month,
       (SELECT count(*) FROM public.email_events e
         WHERE e.workspace_id = w.id AND e.event_type = 'sent'
           AND e.occurred_at >= now() - interval '30 days') AS emails_sent_30d
FROM public.workspaces w;
-- It reads every workspace: the ops role's alone.
REVOKE ALL ON analytics.workspace_usage_definition FROM PUBLIC, anon, authenticated, service_role;

DO $$
BEGIN
  IF (SELECT relkind FROM pg_catalog.pg_class WHERE oid = 'analytics.workspace_usage'::regclass) = 'm' THEN
    CREATE TABLE analytics.workspace_usage_summary AS
      SELECT * FROM analytics.workspace_usage_definition WITH NO DATA;
    IF (SELECT relispopulated FROM pg_catalog.pg_class WHERE oid = 'analytics.workspace_usage'::regclass) THEN
      INSERT INTO analytics.workspace_usage_summary SELECT * FROM analytics.workspace_usage;
    END IF;
    DROP VIEW public.dashboard_workspace_usage;
    DROP MATERIALIZED VIEW analytics.workspace_usage;
    ALTER TABLE analytics.workspace_usage_summary RENAME TO workspace_usage;
    ALTER TABLE analytics.workspace_usage ADD CONSTRAINT workspace_usage_pkey PRIMARY KEY (workspace_id);
  END IF;
END
$$;

ALTER TABLE analytics.workspace_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.workspace_usage FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS workspace_isolation ON analytics.workspace_usage;
CREATE POLICY workspace_isolation ON analytics.workspace_usage FOR SELECT TO authenticated
  USING ((SELECT app.is_workspace_member(workspace_id)));
DROP POLICY IF EXISTS service_role_read ON analytics.workspace_usage;
CREATE POLICY service_role_read ON analytics.workspace_usage FOR SELECT TO service_role USING (true);
REVOKE ALL ON analytics.workspace_usage FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON analytics.workspace_usage TO authenticated, service_role;

CREATE OR REPLACE VIEW public.dashboard_workspace_usage WITH (security_invoker = true, security_barrier = true) AS
  SELECT * FROM analytics.workspace_usage;
-- Supabase's default privileges give the API roles ALL on a new public view: SELECT only, and not for anon.
REVOKE ALL ON public.dashboard_workspace_usage FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.dashboard_workspace_usage TO authenticated, service_role;
