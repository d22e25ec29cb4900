-- 301 materialized views: sequence-step performance, daily workspace activity and lead intent summary.
-- Same rules as 201: WITH NO DATA, a unique plain-column index each, read through security-barrier views.
-- squawk-ignore-file require-concurrent-index-creation
-- (the indexes are on materialized views created empty, WITH NO DATA, in this same transaction.)

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.sequence_step_performance AS
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
GROUP BY s.workspace_id, s.campaign_id, s.id, s.step_number, s.variant
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS sequence_step_performance_sequence_uidx ON analytics.sequence_step_performance (sequence_id);
CREATE INDEX IF NOT EXISTS sequence_step_performance_workspace_campaign_idx
  ON analytics.sequence_step_performance (workspace_id, campaign_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.daily_workspace_activity AS
SELECT e.workspace_id,
       (date_trunc('day', e.occurred_at AT TIME ZONE 'UTC'))::date AS day,
       e.event_type,
       count(*) AS events
FROM public.email_events e
WHERE e.occurred_at >= date_trunc('day', now()) - interval '90 days'
GROUP BY 1, 2, 3
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS daily_workspace_activity_uidx ON analytics.daily_workspace_activity (workspace_id, day, event_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.lead_intent_summary AS
SELECT i.workspace_id,
       i.lead_id,
       count(*) AS signals,
       sum(i.strength) AS total_strength,
       max(i.detected_at) AS last_signal_at,
       array_agg(DISTINCT i.signal_type ORDER BY i.signal_type) AS signal_types
FROM public.intent_signals i
WHERE i.lead_id IS NOT NULL AND i.detected_at >= now() - interval '90 days'
GROUP BY i.workspace_id, i.lead_id
WITH NO DATA;
CREATE UNIQUE INDEX IF NOT EXISTS lead_intent_summary_lead_uidx ON analytics.lead_intent_summary (lead_id, workspace_id);
CREATE INDEX IF NOT EXISTS lead_intent_summary_workspace_strength_idx ON analytics.lead_intent_summary (workspace_id, total_strength DESC);

CREATE OR REPLACE VIEW public.dashboard_sequence_step_performance WITH (security_barrier) AS
  SELECT * FROM analytics.sequence_step_performance WHERE (SELECT app.is_workspace_member(workspace_id));
CREATE OR REPLACE VIEW public.dashboard_daily_workspace_activity WITH (security_barrier) AS
  SELECT * FROM analytics.daily_workspace_activity WHERE (SELECT app.is_workspace_member(workspace_id));
CREATE OR REPLACE VIEW public.dashboard_lead_intent_summary WITH (security_barrier) AS
  SELECT * FROM analytics.lead_intent_summary WHERE (SELECT app.is_workspace_member(workspace_id));
GRANT SELECT ON public.dashboard_sequence_step_performance, public.dashboard_daily_workspace_activity,
  public.dashboard_lead_intent_summary TO authenticated, service_role;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO service_role;
