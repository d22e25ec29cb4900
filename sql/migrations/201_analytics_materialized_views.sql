-- 201 analytics materialized views: the four dashboard aggregates, refreshed by the refresh DAGs.
--
-- Created WITH NO DATA so the migration takes no time on a large database; the first refresh populates them.
-- Each has a unique index on plain columns, which REFRESH MATERIALIZED VIEW CONCURRENTLY requires.
-- Materialized views cannot have row-level security, so they live in the analytics schema, which the API
-- roles cannot read, and dashboards read them through security-barrier views that filter by membership.
-- squawk-ignore-file require-concurrent-index-creation
-- (the indexes are on materialized views created empty, WITH NO DATA, in this same transaction.)

CREATE SCHEMA IF NOT EXISTS analytics;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;
GRANT USAGE ON SCHEMA analytics TO service_role;

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.campaign_analytics AS
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
LEFT JOIN (
  SELECT campaign_id,
         count(*) FILTER (WHERE event_type = 'sent') AS sent,
         count(*) FILTER (WHERE event_type = 'delivered') AS delivered,
         count(DISTINCT message_id) FILTER (WHERE event_type = 'opened') AS opened,
         count(DISTINCT message_id) FILTER (WHERE event_type = 'clicked') AS clicked,
         count(*) FILTER (WHERE event_type = 'replied') AS replied,
         count(*) FILTER (WHERE event_type = 'bounced') AS bounced,
         count(*) FILTER (WHERE event_type = 'complained') AS complained,
         max(occurred_at) AS last_event_at
  FROM public.email_events
  WHERE campaign_id IS NOT NULL
  GROUP BY campaign_id
) e ON e.campaign_id = c.id
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS campaign_analytics_campaign_uidx ON analytics.campaign_analytics (campaign_id);
CREATE INDEX IF NOT EXISTS campaign_analytics_workspace_status_idx ON analytics.campaign_analytics (workspace_id, status);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.workspace_usage AS
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
FROM public.workspaces w
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS workspace_usage_workspace_uidx ON analytics.workspace_usage (workspace_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.lead_engagement AS
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
GROUP BY e.workspace_id, e.lead_id
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS lead_engagement_lead_uidx ON analytics.lead_engagement (lead_id, workspace_id);
CREATE INDEX IF NOT EXISTS lead_engagement_workspace_score_idx ON analytics.lead_engagement (workspace_id, engagement_score DESC);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.email_deliverability AS
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
GROUP BY 1, 2, 3
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS email_deliverability_account_day_uidx ON analytics.email_deliverability (email_account_id, day, workspace_id);
CREATE INDEX IF NOT EXISTS email_deliverability_workspace_day_idx ON analytics.email_deliverability (workspace_id, day DESC);

CREATE OR REPLACE VIEW public.dashboard_campaign_analytics WITH (security_barrier) AS
  SELECT * FROM analytics.campaign_analytics WHERE (SELECT app.is_workspace_member(workspace_id));
CREATE OR REPLACE VIEW public.dashboard_workspace_usage WITH (security_barrier) AS
  SELECT * FROM analytics.workspace_usage WHERE (SELECT app.is_workspace_member(workspace_id));
CREATE OR REPLACE VIEW public.dashboard_lead_engagement WITH (security_barrier) AS
  SELECT * FROM analytics.lead_engagement WHERE (SELECT app.is_workspace_member(workspace_id));
CREATE OR REPLACE VIEW public.dashboard_email_deliverability WITH (security_barrier) AS
  SELECT * FROM analytics.email_deliverability WHERE (SELECT app.is_workspace_member(workspace_id));
GRANT SELECT ON public.dashboard_campaign_analytics, public.dashboard_workspace_usage,
  public.dashboard_lead_engagement, public.dashboard_email_deliverability TO authenticated, service_role;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO service_role;
