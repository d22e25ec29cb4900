-- analytics.sequence_step_performance, one group per sequence step: the steps whose row changed, whose messages
-- changed (both steps of a message moved between them) or whose messages' events changed.
SELECT id AS sequence_id FROM {campaign_sequences} d WHERE id IS NOT NULL
UNION
SELECT sequence_id FROM {email_messages} d WHERE sequence_id IS NOT NULL
UNION
SELECT m.sequence_id FROM {email_events} d JOIN public.email_messages m ON m.id = d.message_id
WHERE m.sequence_id IS NOT NULL
