-- 305 incremental analytics: five dashboard aggregates become summary tables that ColdCopy DB Ops maintains by
-- group (coldcopy.incremental): a refresh recomputes only the groups whose source rows changed, so it costs
-- what changed, not what exists. docs/refresh.md says how each one is maintained and why it stays exact.
--
-- For each of them:
--   analytics.<name>_definition  the view's definition (201/301's, campaign_analytics' rewritten to the same
--                                rows): what a rebuild inserts, what the daily verify compares with, and, filtered
--                                by group key, what an incremental apply inserts. One text: they cannot drift;
--   analytics.<name>             a table with the materialized view's name, columns and unique key, filled
--                                from the materialized view's current content, so dashboards read the same
--                                relation and never see it empty; the dashboard views are recreated over it.
-- A migration that changes a definition changes the view <name>_definition: its checksum differs from the
-- one the summary was built from, and the next refresh rebuilds the summary.
-- workspace_usage and lead_intent_summary stay materialized views (their rolling windows move every row).
-- squawk-ignore-file ban-concurrent-index-creation-in-transaction, require-concurrent-index-creation, prefer-robust-stmts
-- (the CONCURRENTLY build runs outside a transaction block, a part of its own; the other indexes are on tables
-- created in this same transaction, which nobody can read yet.)

-- The sequence-step summary recomputes a step from its messages: find them by sequence without a scan.
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_messages_sequence_idx ON public.email_messages (sequence_id);

-- Written with LATERAL (each campaign's own events) rather than 201's join to one aggregate of all events: the
-- same rows, and a filter on campaign_id reaches email_events' index instead of aggregating every event.
CREATE VIEW analytics.campaign_analytics_definition AS
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
  WHERE campaign_id = c.id
  GROUP BY campaign_id
) e ON true;

CREATE VIEW analytics.sequence_step_performance_definition AS
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
LEFT JOIN public.email_messages m ON m.sequence_id = s.id AND m.direction = 'outbound'
LEFT JOIN public.email_events e ON e.message_id = m.id
GROUP BY s.workspace_id, s.campaign_id, s.id, s.step_number, s.variant;

CREATE VIEW analytics.lead_engagement_definition AS
SELECT e.workspace_id,
       e.lead_id,
       count(*) FILTER (WHERE e.event_type = 'sent') AS emails_sent,
       count(*) FILTER (WHERE e.event_type = 'opened') AS opens,
       count(*) FILTER (WHERE e.event_type = 'clicked') AS clicks,
       count(*) FILTER (WHERE e.event_type = 'replied') AS replies,
       max(e.occurred_at) FILTER (WHERE e.event_type IN ('opened', 'clicked', 'replied')) AS last_engaged_at,
       least(100, count(*) FILTER (WHERE e.event_type = 'opened')
                  + 3 * count(*) FILTER (WHERE e.event_type = 'clicked')
                  + 10 * count(*) FILTER (WHERE e.event_type = 'replied')) AS engagement_score
FROM public.email_events e
WHERE e.lead_id IS NOT NULL
GROUP BY e.workspace_id, e.lead_id;

CREATE VIEW analytics.email_deliverability_definition AS
SELECT e.workspace_id,
       e.email_account_id,
       (date_trunc('day', e.occurred_at AT TIME ZONE 'UTC'))::date AS day,
       count(*) FILTER (WHERE e.event_type = 'sent') AS sent,
       count(*) FILTER (WHERE e.event_type = 'delivered') AS delivered,
       count(*) FILTER (WHERE e.event_type = 'bounced') AS bounced,
       count(*) FILTER (WHERE e.event_type = 'bounced' AND e.bounce_type = 'hard') AS hard_bounces,
       count(*) FILTER (WHERE e.event_type = 'complained') AS complaints,
       round(count(*) FILTER (WHERE e.event_type = 'bounced')::numeric
             / nullif(count(*) FILTER (WHERE e.event_type = 'sent'), 0), 4) AS bounce_rate,
       round(count(*) FILTER (WHERE e.event_type = 'complained')::numeric
             / nullif(count(*) FILTER (WHERE e.event_type = 'delivered'), 0), 5) AS complaint_rate
FROM public.email_events e
WHERE e.email_account_id IS NOT NULL
  AND e.occurred_at >= date_trunc('day', now()) - interval '90 days'
GROUP BY 1, 2, 3;

CREATE VIEW analytics.daily_workspace_activity_definition AS
SELECT e.workspace_id,
       (date_trunc('day', e.occurred_at AT TIME ZONE 'UTC'))::date AS day,
       e.event_type,
       count(*) AS events
FROM public.email_events e
WHERE e.occurred_at >= date_trunc('day', now()) - interval '90 days'
GROUP BY 1, 2, 3;

-- The summaries: the definition's exact column types (CREATE TABLE AS … WITH NO DATA), the materialized view's
-- rows, then the materialized view's name. The dashboard views are recreated as 201/301 made them.
DO $$
DECLARE
  v record;
BEGIN
  FOR v IN SELECT * FROM (VALUES
      ('campaign_analytics', 'campaign_id'),
      ('sequence_step_performance', 'sequence_id'),
      ('lead_engagement', 'lead_id, workspace_id'),
      ('email_deliverability', 'email_account_id, day, workspace_id'),
      ('daily_workspace_activity', 'workspace_id, day, event_type')) AS t (name, key)
  LOOP
    EXECUTE format('CREATE TABLE analytics.%I AS SELECT * FROM analytics.%I WITH NO DATA',
                   v.name || '_summary', v.name || '_definition');
    IF (SELECT relispopulated FROM pg_catalog.pg_class WHERE oid = format('analytics.%I', v.name)::regclass) THEN
      EXECUTE format('INSERT INTO analytics.%I SELECT * FROM analytics.%I', v.name || '_summary', v.name);
    END IF;
    EXECUTE format('DROP VIEW public.%I', 'dashboard_' || v.name);
    EXECUTE format('DROP MATERIALIZED VIEW analytics.%I', v.name);
    EXECUTE format('ALTER TABLE analytics.%I RENAME TO %I', v.name || '_summary', v.name);
    EXECUTE format('ALTER TABLE analytics.%I ADD CONSTRAINT %I PRIMARY KEY (%s)', v.name, v.name || '_pkey', v.key);
    EXECUTE format('CREATE OR REPLACE VIEW public.%I WITH (security_barrier) AS '
                   'SELECT * FROM analytics.%I WHERE (SELECT app.is_workspace_member(workspace_id))',
                   'dashboard_' || v.name, v.name);
    EXECUTE format('GRANT SELECT ON public.%I TO authenticated, service_role', 'dashboard_' || v.name);
    EXECUTE format('GRANT SELECT ON analytics.%I TO service_role', v.name);
  END LOOP;
END
$$;
CREATE INDEX IF NOT EXISTS campaign_analytics_workspace_status_idx ON analytics.campaign_analytics (workspace_id, status);
CREATE INDEX IF NOT EXISTS sequence_step_performance_workspace_campaign_idx
  ON analytics.sequence_step_performance (workspace_id, campaign_id);
CREATE INDEX IF NOT EXISTS lead_engagement_workspace_score_idx ON analytics.lead_engagement (workspace_id, engagement_score DESC);
CREATE INDEX IF NOT EXISTS email_deliverability_workspace_day_idx ON analytics.email_deliverability (workspace_id, day DESC);
CREATE INDEX IF NOT EXISTS daily_workspace_activity_day_idx ON analytics.daily_workspace_activity (day);
