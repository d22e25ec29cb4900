-- analytics.lead_intent_summary, one group per (lead, workspace): those of the signals that changed (both images
-- of an update), and those with a signal the 90-day window let go since the last apply: detected_at between
-- the edge at the last apply's clock and the edge now (either way round: a clock set back lets signals in).
SELECT lead_id, workspace_id FROM {intent_signals} d WHERE lead_id IS NOT NULL AND workspace_id IS NOT NULL
UNION
SELECT lead_id, workspace_id FROM public.intent_signals
WHERE lead_id IS NOT NULL
  AND detected_at >= least({previous_clock}, now()) - interval '90 days'
  AND detected_at < greatest({previous_clock}, now()) - interval '90 days'
