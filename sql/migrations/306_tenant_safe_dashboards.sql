-- 306 tenant-safe dashboards and definer functions (issue 40: holes found as a tenant login and as anon).
--
-- 1. Every SECURITY DEFINER function this project's migrations made runs with search_path = pg_catalog, pg_temp.
--    An empty search_path still looks in the caller's pg_temp FIRST for types and tables, so a pg_temp.jsonb
--    (or .date, .text) domain whose CHECK calls the caller's own function ran that function as the owner; with
--    pg_catalog named first, every built-in type resolves there, and pg_temp (never searched for functions or
--    operators) comes last.
-- 2. The dashboards read the summaries with the reader's own rights: security_invoker views over summary tables
--    with row-level security enabled and forced, so a wrong view filter cannot leak another workspace's figures.
--    A summary's rows are written only by the ops role (BYPASSRLS, as every ops job needs); tenants read.
-- 3. No view in public is writable by the API roles: 305's dashboards over plain tables are auto-updatable, and
--    Supabase's default privileges hand ALL on every new public object to anon/authenticated/service_role, so
--    anon could insert a "complained" event into any workspace's dashboard. Only SELECT is left on them.
-- 4. The summary definitions join a workspace's rows to its own campaigns, messages and steps only: an event of
--    workspace A naming B's message or campaign no longer moves B's figures (inherited from 201/301). A changed
--    definition has another checksum, so the next refresh rebuilds each summary from it.
-- squawk-ignore-file prefer-robust-stmts
-- (policies are dropped before they are created, in one transaction; the other statements are idempotent.)

DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE p.prosecdef AND n.nspname IN ('app', 'pgbouncer') AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles
                                                                            WHERE rolname = current_user)
  LOOP
    EXECUTE pg_catalog.format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', f);
  END LOOP;
END
$$;

CREATE OR REPLACE VIEW analytics.campaign_analytics_definition AS
SELECT c.workspace_id,
       c.id AS campaign_id,
       c.name,
       c.status,
       coalesce(e.sent, 0) AS sent,
       coalesce(e.delivered, 0) AS delivered,
       coalesce(e.opened, 0) AS opened,
       coalesce(e.clicked, 0) AS clicked,
       coalesce(e.replied, 0) AS replied,
       coalesce(e.bounced, 0) AS bounced,
       coalesce(e.complained, 0) AS complained,
       round(coalesce(e.opened, 0)::numeric / nullif(e.delivered, 0), 4) AS open_rate,
       round(coalesce(e.replied, 0)::numeric / nullif(e.delivered, 0), 4) AS reply_rate,
       round(coalesce(e.bounced, 0)::numeric / nullif(e.sent, 0), 4) AS bounce_rate,
       e.last_event_at
FROM public.campaigns c
LEFT JOIN LATERAL (
  SELECT count(*) FILTER (WHERE event_type = 'sent') AS sent,
         count(*) FILTER (WHERE event_type = 'delivered') AS delivered,
         count(DISTINCT message_id) FILTER (WHERE event_type = 'opened') AS opened,
         count(DISTINCT message_id) FILTER (WHERE event_type = 'clicked') AS clicked,
         count(*) FILTER (WHERE event_type = 'replied') AS replied,
         count(*) FILTER (WHERE event_type = 'bounced') AS bounced,
         count(*) FILTER (WHERE event_type = 'complained') AS complained,
         max(occurred_at) AS last_event_at
  FROM public.email_events
  WHERE campaign_id = c.id AND workspace_id = c.workspace_id
  GROUP BY campaign_id
) e ON true;

CREATE OR REPLACE VIEW analytics.sequence_step_performance_definition AS
SELECT s.workspace_id,
       s.campaign_id,
       s.id AS sequence_id,
       s.step_number,
       s.variant,
       count(DISTINCT m.id) AS messages_sent,
       count(DISTINCT e.message_id) FILTER (WHERE e.event_type = 'opened') AS opened,
       count(DISTINCT e.message_id) FILTER (WHERE e.event_type = 'replied') AS replied,
       round(count(DISTINCT e.message_id) FILTER (WHERE e.event_type = 'replied')::numeric
             / nullif(count(DISTINCT m.id), 0), 4) AS reply_rate
FROM public.campaign_sequences s
LEFT JOIN public.email_messages m
  ON m.sequence_id = s.id AND m.workspace_id = s.workspace_id AND m.direction = 'outbound'
LEFT JOIN public.email_events e ON e.message_id = m.id AND e.workspace_id = m.workspace_id
GROUP BY s.workspace_id, s.campaign_id, s.id, s.step_number, s.variant;

-- The definitions read every workspace: the ops role's alone.
REVOKE ALL ON analytics.campaign_analytics_definition, analytics.sequence_step_performance_definition,
  analytics.lead_engagement_definition, analytics.email_deliverability_definition,
  analytics.daily_workspace_activity_definition FROM PUBLIC, anon, authenticated;

GRANT USAGE ON SCHEMA analytics TO authenticated;
DO $$
DECLARE
  summary text;
BEGIN
  FOREACH summary IN ARRAY ARRAY['campaign_analytics', 'sequence_step_performance', 'lead_engagement',
                                 'email_deliverability', 'daily_workspace_activity'] LOOP
    EXECUTE pg_catalog.format('ALTER TABLE analytics.%I ENABLE ROW LEVEL SECURITY', summary);
    EXECUTE pg_catalog.format('ALTER TABLE analytics.%I FORCE ROW LEVEL SECURITY', summary);
    EXECUTE pg_catalog.format('DROP POLICY IF EXISTS workspace_isolation ON analytics.%I', summary);
    EXECUTE pg_catalog.format(
      'CREATE POLICY workspace_isolation ON analytics.%I FOR SELECT TO authenticated '
      'USING ((SELECT app.is_workspace_member(workspace_id)))', summary);
    EXECUTE pg_catalog.format('DROP POLICY IF EXISTS service_role_read ON analytics.%I', summary);
    EXECUTE pg_catalog.format(
      'CREATE POLICY service_role_read ON analytics.%I FOR SELECT TO service_role USING (true)', summary);
    EXECUTE pg_catalog.format('REVOKE ALL ON analytics.%I FROM PUBLIC, anon, authenticated, service_role', summary);
    EXECUTE pg_catalog.format('GRANT SELECT ON analytics.%I TO authenticated, service_role', summary);
    EXECUTE pg_catalog.format(
      'CREATE OR REPLACE VIEW public.%I WITH (security_invoker = true, security_barrier = true) AS '
      'SELECT * FROM analytics.%I', 'dashboard_' || summary, summary);
  END LOOP;
END
$$;

-- Every view of public: read-only for the API roles, whatever the platform's default privileges gave them.
DO $$
DECLARE
  v regclass;
BEGIN
  FOR v IN
    SELECT c.oid::regclass FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'v'
      AND c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  LOOP
    EXECUTE pg_catalog.format(
      'REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %s FROM PUBLIC, anon, authenticated, '
      'service_role', v);
  END LOOP;
END
$$;
REVOKE ALL ON public.dashboard_campaign_analytics, public.dashboard_sequence_step_performance,
  public.dashboard_lead_engagement, public.dashboard_email_deliverability, public.dashboard_daily_workspace_activity,
  public.dashboard_workspace_usage, public.dashboard_lead_intent_summary FROM anon;
GRANT SELECT ON public.dashboard_campaign_analytics, public.dashboard_sequence_step_performance,
  public.dashboard_lead_engagement, public.dashboard_email_deliverability, public.dashboard_daily_workspace_activity,
  public.dashboard_workspace_usage, public.dashboard_lead_intent_summary TO authenticated, service_role;

-- 5. What the API roles may do to the project's tables, sequences and trigger functions (on Supabase the default
--    privileges give anon/authenticated ALL on every new public table and sequence): TRIGGER let a tenant login
--    hang its own pg_temp function on a table, to run as whoever writes next (the ops role included), or
--    app.add_workspace_owner() on leads to make itself owner of another workspace; TRUNCATE ignores RLS;
--    UPDATE on a sequence lets setval() exhaust it for every workspace. Reads and row writes stay, under RLS.
REVOKE TRUNCATE, TRIGGER, REFERENCES ON ALL TABLES IN SCHEMA public FROM PUBLIC, anon, authenticated;
REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC, anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE TRUNCATE, TRIGGER, REFERENCES ON TABLES FROM anon, authenticated;
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE UPDATE ON SEQUENCES FROM anon, authenticated;
-- Trigger functions need no EXECUTE to fire: nobody calls them, nor hangs them on a table of their choosing.
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'app' AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype
      AND p.proowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
  LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated', f);
  END LOOP;
END
$$;
