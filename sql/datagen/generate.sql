-- ColdCopy test data at scale factor :scale, deterministic for a given :seed and :as_of.
-- Set-based (INSERT ... SELECT over generate_series), run by scripts/generate_data.py in one transaction.
-- Per scale unit: 4 workspaces, 12 users, 12 sending accounts, 6,000 leads, 20 campaigns of 3 steps,
-- about 12,000 messages and 32,000 email_events spread over the 15 months up to :as_of.
-- Ids are md5-derived UUIDs and "randomness" is hashed from (seed, key), so reruns give identical rows.

CREATE FUNCTION pg_temp.rnd(key text) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$ SELECT (hashtextextended(key, :seed) & 2147483647)::double precision / 2147483648 $$;
CREATE FUNCTION pg_temp.id(kind text, n bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$ SELECT md5(:seed || ':' || kind || ':' || n)::uuid $$;

SELECT count(*) FROM app.ensure_email_events_partitions(16, 3, :'as_of'::timestamptz);

INSERT INTO public.users (id, email, full_name, created_at)
SELECT pg_temp.id('user', u), 'user' || u || '@coldcopy-customer' || ((u - 1) / 3 + 1) || '.example',
       'User ' || u, :'as_of'::timestamptz - interval '500 days'
FROM generate_series(1, 12 * :scale) u;

INSERT INTO public.workspaces (id, name, slug, owner_id, plan, monthly_email_quota, created_at)
SELECT pg_temp.id('ws', w), 'Workspace ' || w, 'ws-' || :seed || '-' || w, pg_temp.id('user', (w - 1) * 3 + 1),
       (ARRAY['starter', 'growth', 'scale', 'enterprise'])[1 + (w % 4)], 20000 * (1 + w % 4),
       :'as_of'::timestamptz - interval '480 days'
FROM generate_series(1, 4 * :scale) w;

-- the owner joined through the workspaces trigger; two more members each
INSERT INTO public.workspace_members (workspace_id, user_id, role)
SELECT pg_temp.id('ws', w), pg_temp.id('user', (w - 1) * 3 + k), CASE k WHEN 2 THEN 'admin' ELSE 'member' END
FROM generate_series(1, 4 * :scale) w, generate_series(2, 3) k;

INSERT INTO public.email_accounts (id, workspace_id, email, provider, daily_limit)
SELECT pg_temp.id('acct', a), pg_temp.id('ws', (a - 1) / 3 + 1), 'sender' || a || '@mail' || ((a - 1) / 3 + 1) || '.example',
       (ARRAY['gmail', 'outlook', 'smtp'])[1 + a % 3], 50 + (a % 5) * 25
FROM generate_series(1, 12 * :scale) a;

INSERT INTO public.leads (id, workspace_id, email, first_name, last_name, company, title, country, status, source,
                          created_at)
SELECT pg_temp.id('lead', l), pg_temp.id('ws', (l - 1) / 1500 + 1),
       'lead' || l || '@company' || (l % 997) || '.example',
       'First' || l, 'Last' || l, 'Company ' || (l % 997),
       (ARRAY['CEO', 'CTO', 'VP Sales', 'Head of Growth', 'Founder'])[1 + l % 5],
       (ARRAY['US', 'GB', 'DE', 'FR', 'NL', 'CA'])[1 + l % 6],
       (ARRAY['new', 'contacted', 'contacted', 'engaged', 'replied', 'interested', 'bounced'])[1 + l % 7],
       (ARRAY['import', 'api', 'hubspot', 'salesforce'])[1 + l % 4],
       :'as_of'::timestamptz - (pg_temp.rnd('lead-created:' || l) * interval '460 days') - interval '2 days'
FROM generate_series(1, 6000 * :scale) l;

INSERT INTO public.campaigns (id, workspace_id, name, status, daily_send_limit, started_at, created_at)
SELECT pg_temp.id('camp', c), pg_temp.id('ws', (c - 1) / 5 + 1), 'Campaign ' || c,
       (ARRAY['active', 'active', 'paused', 'completed', 'archived'])[1 + c % 5], 200,
       :'as_of'::timestamptz - ((c % 15) * interval '30 days') - interval '20 days',
       :'as_of'::timestamptz - ((c % 15) * interval '30 days') - interval '21 days'
FROM generate_series(1, 20 * :scale) c;

INSERT INTO public.campaign_sequences (id, workspace_id, campaign_id, step_number, delay_days, subject, body)
SELECT pg_temp.id('seq', (c - 1) * 3 + s), pg_temp.id('ws', (c - 1) / 5 + 1), pg_temp.id('camp', c), s, (s - 1) * 3,
       'Step ' || s || ' of campaign ' || c, 'Hi {{first_name}}, ...'
FROM generate_series(1, 20 * :scale) c, generate_series(1, 3) s;

-- each lead is enrolled in one campaign of its workspace (lead l: workspace (l-1)/1500+1, 5 campaigns each)
INSERT INTO public.campaign_leads (id, workspace_id, campaign_id, lead_id, status, current_step, enrolled_at)
SELECT pg_temp.id('cl', l), pg_temp.id('ws', (l - 1) / 1500 + 1), pg_temp.id('camp', ((l - 1) / 1500) * 5 + 1 + l % 5),
       pg_temp.id('lead', l), (ARRAY['in_progress', 'completed', 'replied', 'bounced'])[1 + l % 4], 1 + l % 3,
       :'as_of'::timestamptz - (pg_temp.rnd('lead-sent:' || l) * interval '455 days') - interval '1 day'
FROM generate_series(1, 6000 * :scale) l;

-- 1 to 3 steps sent per lead (2 on average)
CREATE TEMP TABLE generated_messages ON COMMIT DROP AS
SELECT l, s,
       pg_temp.id('msg', (l - 1) * 3 + s) AS id,
       pg_temp.id('ws', (l - 1) / 1500 + 1) AS workspace_id,
       ((l - 1) / 1500) * 5 + 1 + l % 5 AS campaign_no,
       pg_temp.id('acct', ((l - 1) / 1500) * 3 + 1 + l % 3) AS account_id,
       least(:'as_of'::timestamptz - interval '1 minute',
             :'as_of'::timestamptz - (pg_temp.rnd('lead-sent:' || l) * interval '455 days')
               + (s - 1) * interval '3 days' + pg_temp.rnd('msg-at:' || l || ':' || s) * interval '8 hours') AS sent_at,
       pg_temp.rnd('msg-fate:' || l || ':' || s) AS fate
FROM generate_series(1, 6000 * :scale) l, generate_series(1, 3) s
WHERE s <= 1 + floor(pg_temp.rnd('steps:' || l) * 3);

INSERT INTO public.email_messages (id, workspace_id, campaign_id, sequence_id, lead_id, email_account_id, message_id,
                                   thread_id, subject, status, sent_at, created_at)
SELECT id, workspace_id, pg_temp.id('camp', campaign_no), pg_temp.id('seq', (campaign_no - 1) * 3 + s),
       pg_temp.id('lead', l), account_id, '<' || id || '@coldcopy.example>', 'thread-' || l, 'Step ' || s,
       CASE WHEN fate < 0.03 THEN 'bounced' ELSE 'delivered' END, sent_at, sent_at - interval '1 minute'
FROM generated_messages;

-- the funnel: sent; delivered (97%) or bounced (3%); opened (45% of delivered, some twice); clicked (8%);
-- replied (4%); complained (0.2%); unsubscribed (0.5%)
INSERT INTO public.email_events (workspace_id, message_id, campaign_id, lead_id, email_account_id, event_type,
                                 bounce_type, occurred_at)
SELECT m.workspace_id, m.id, pg_temp.id('camp', m.campaign_no), pg_temp.id('lead', m.l), m.account_id, e.event_type,
       CASE WHEN e.event_type = 'bounced' THEN (CASE WHEN m.fate < 0.02 THEN 'hard' ELSE 'soft' END) END,
       least(:'as_of'::timestamptz - interval '1 second', m.sent_at + e.delay)
FROM generated_messages m
CROSS JOIN LATERAL (
  SELECT 'sent'::text AS event_type, interval '0' AS delay
  UNION ALL SELECT 'bounced', interval '2 minutes' WHERE m.fate < 0.03
  UNION ALL SELECT 'delivered', interval '1 minute' WHERE m.fate >= 0.03
  UNION ALL SELECT 'opened', interval '1 hour' * (1 + 30 * pg_temp.rnd('open:' || m.id)) WHERE m.fate >= 0.55
  UNION ALL SELECT 'opened', interval '1 day' * (1 + 5 * pg_temp.rnd('reopen:' || m.id)) WHERE m.fate >= 0.85
  UNION ALL SELECT 'clicked', interval '2 hours' * (1 + 20 * pg_temp.rnd('click:' || m.id)) WHERE m.fate >= 0.92
  UNION ALL SELECT 'replied', interval '5 hours' * (1 + 20 * pg_temp.rnd('reply:' || m.id)) WHERE m.fate >= 0.96
  UNION ALL SELECT 'complained', interval '3 hours' WHERE m.fate BETWEEN 0.030 AND 0.032
  UNION ALL SELECT 'unsubscribed', interval '4 hours' WHERE m.fate BETWEEN 0.040 AND 0.045
) e;

INSERT INTO public.intent_signals (workspace_id, lead_id, company_domain, signal_type, strength, detected_at)
SELECT pg_temp.id('ws', (l - 1) / 1500 + 1), pg_temp.id('lead', l), 'company' || (l % 997) || '.example',
       (ARRAY['website_visit', 'job_posting', 'funding', 'tech_change', 'news'])[1 + l % 5],
       round((1 + 9 * pg_temp.rnd('signal:' || l))::numeric, 2),
       :'as_of'::timestamptz - pg_temp.rnd('signal-at:' || l) * interval '120 days'
FROM generate_series(1, 6000 * :scale, 4) l;
