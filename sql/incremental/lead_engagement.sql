-- analytics.lead_engagement, one group per (workspace, lead): those of the events that changed (both, for an
-- event moved between leads or workspaces).
SELECT lead_id, workspace_id FROM {email_events} d WHERE lead_id IS NOT NULL AND workspace_id IS NOT NULL
