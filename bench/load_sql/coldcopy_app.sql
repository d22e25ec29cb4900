-- ColdCopy's application traffic for pgbench (-M simple through PgBouncer 1.18's transaction pooling):
-- a lead picked at random from coldcopy_load.leads (numbered 1..:leads by scripts/app_load.py).
\set n random(1, :leads)
\set kind random(1, 10)
\if :kind <= 4
INSERT INTO public.email_events (workspace_id, campaign_id, lead_id, event_type)
  SELECT workspace_id, campaign_id, lead_id, 'opened' FROM coldcopy_load.leads WHERE n = :n;
\elif :kind <= 6
UPDATE public.leads SET last_contacted_at = now() WHERE id = (SELECT lead_id FROM coldcopy_load.leads WHERE n = :n);
\elif :kind = 7
UPDATE public.campaigns SET updated_at = now() WHERE id = (SELECT campaign_id FROM coldcopy_load.leads WHERE n = :n);
\elif :kind = 8
SELECT * FROM analytics.campaign_analytics
  WHERE workspace_id = (SELECT workspace_id FROM coldcopy_load.leads WHERE n = :n) LIMIT 20;
\else
SELECT id, event_type, occurred_at FROM public.email_events
  WHERE workspace_id = (SELECT workspace_id FROM coldcopy_load.leads WHERE n = :n)
    AND occurred_at > now() - interval '1 day' ORDER BY occurred_at DESC LIMIT 50;
\endif
