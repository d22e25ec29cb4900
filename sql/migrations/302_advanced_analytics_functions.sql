-- 302 advanced analytics functions: funnels, send-time analysis and trends for the dashboards.
-- SECURITY INVOKER (the default): they read the base tables, so row-level security applies to the caller.

CREATE OR REPLACE FUNCTION analytics.campaign_funnel(p_campaign_id uuid)
RETURNS TABLE (stage text, messages bigint, rate numeric)
LANGUAGE sql STABLE
AS $$
  WITH per_stage AS (
    SELECT s.stage, s.ord, count(DISTINCT e.message_id) AS messages
    FROM (VALUES ('sent', 1), ('delivered', 2), ('opened', 3), ('clicked', 4), ('replied', 5)) AS s (stage, ord)
    LEFT JOIN public.email_events e ON e.event_type = s.stage AND e.campaign_id = p_campaign_id
    GROUP BY s.stage, s.ord
  )
  SELECT stage, messages,
         round(messages::numeric / nullif(first_value(messages) OVER (ORDER BY ord), 0), 4)
  FROM per_stage
  ORDER BY ord
$$;

CREATE OR REPLACE FUNCTION analytics.best_send_hours(p_workspace_id uuid, p_days integer DEFAULT 90)
RETURNS TABLE (hour_utc integer, sent bigint, opened bigint, open_rate numeric)
LANGUAGE sql STABLE
AS $$
  SELECT extract(hour FROM sent.occurred_at AT TIME ZONE 'UTC')::integer,
         count(*),
         count(opened.message_id),
         round(count(opened.message_id)::numeric / nullif(count(*), 0), 4)
  FROM public.email_events sent
  LEFT JOIN LATERAL (
    SELECT o.message_id FROM public.email_events o
    WHERE o.message_id = sent.message_id AND o.event_type = 'opened'
    LIMIT 1
  ) opened ON true
  WHERE sent.workspace_id = p_workspace_id AND sent.event_type = 'sent'
    AND sent.occurred_at >= now() - make_interval(days => p_days)
  GROUP BY 1
  ORDER BY 1
$$;

CREATE OR REPLACE FUNCTION analytics.workspace_send_trend(p_workspace_id uuid, p_days integer DEFAULT 30)
RETURNS TABLE (day date, sent bigint, replied bigint, bounced bigint)
LANGUAGE sql STABLE
AS $$
  SELECT d::date,
         count(e.*) FILTER (WHERE e.event_type = 'sent'),
         count(e.*) FILTER (WHERE e.event_type = 'replied'),
         count(e.*) FILTER (WHERE e.event_type = 'bounced')
  FROM generate_series(current_date - (p_days - 1), current_date, interval '1 day') AS d
  LEFT JOIN public.email_events e
    ON e.workspace_id = p_workspace_id
   AND e.occurred_at >= d AND e.occurred_at < d + interval '1 day'
  GROUP BY d
  ORDER BY d
$$;

GRANT USAGE ON SCHEMA analytics TO authenticated;
REVOKE SELECT ON ALL TABLES IN SCHEMA analytics FROM authenticated;
GRANT EXECUTE ON FUNCTION analytics.campaign_funnel(uuid), analytics.best_send_hours(uuid, integer),
  analytics.workspace_send_trend(uuid, integer) TO authenticated, service_role;
