-- analytics.campaign_analytics, one group per campaign: the campaigns whose row or whose events changed.
SELECT campaign_id FROM {email_events} d WHERE campaign_id IS NOT NULL
UNION
SELECT id FROM {campaigns} d WHERE id IS NOT NULL
