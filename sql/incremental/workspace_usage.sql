-- analytics.workspace_usage, one group per workspace: those whose rows changed, and every one whenever the clock
-- moved (its 30-day window moves to the microsecond): by groups, which it is only when its aggregate state no longer
-- states the definition, every apply recomputes them all (a rebuild). By deltas: coldcopy.refresh.incremental.usage.
SELECT workspace_id FROM {workspaces} d WHERE workspace_id IS NOT NULL
UNION
SELECT workspace_id FROM {workspace_members} d WHERE workspace_id IS NOT NULL
UNION
SELECT workspace_id FROM {leads} d WHERE workspace_id IS NOT NULL
UNION
SELECT workspace_id FROM {email_accounts} d WHERE workspace_id IS NOT NULL
UNION
SELECT workspace_id FROM {campaigns} d WHERE workspace_id IS NOT NULL
UNION
SELECT workspace_id FROM {email_events} d WHERE workspace_id IS NOT NULL AND event_type = 'sent'
UNION
SELECT id FROM public.workspaces WHERE now() IS DISTINCT FROM {previous_clock}
