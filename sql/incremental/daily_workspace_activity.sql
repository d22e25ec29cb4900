-- analytics.daily_workspace_activity, one group per (workspace, UTC day, event type) of the last 90 days: those
-- of the events that changed, and those the window's move changed (as for email_deliverability).
SELECT workspace_id, day, event_type FROM {email_events} d
WHERE workspace_id IS NOT NULL AND day IS NOT NULL AND event_type IS NOT NULL
UNION
SELECT workspace_id, day, event_type FROM analytics.daily_workspace_activity
WHERE date_trunc('day', now()) IS DISTINCT FROM date_trunc('day', {previous_clock})
  AND day <= ((date_trunc('day', now()) - interval '90 days') AT TIME ZONE 'UTC')::date
