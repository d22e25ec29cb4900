-- analytics.email_deliverability, one group per (sending account, UTC day, workspace) of the last 90 days: those
-- of the events that changed, and those the window's move changed.
-- Clock-dependent by whole days only: the window starts at a midnight (of the session's TimeZone; applies run in
-- UTC). When it has moved since the last apply, every group on or before its new first day is recomputed too:
-- the days that left it are deleted, a day it now cuts is recomputed as the definition cuts it.
SELECT email_account_id, day, workspace_id FROM {email_events} d
WHERE email_account_id IS NOT NULL AND workspace_id IS NOT NULL AND day IS NOT NULL
UNION
SELECT email_account_id, day, workspace_id FROM analytics.email_deliverability
WHERE date_trunc('day', now()) IS DISTINCT FROM date_trunc('day', {previous_clock})
  AND day <= ((date_trunc('day', now()) - interval '90 days') AT TIME ZONE 'UTC')::date
