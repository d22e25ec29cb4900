-- 103 email infrastructure: sending accounts, messages and the email_events stream.
--
-- email_events is RANGE-partitioned by month on occurred_at (UTC boundaries) and has no DEFAULT partition:
-- DETACH PARTITION ... CONCURRENTLY is refused on a table that has one. Partitions and the helpers that
-- create and rotate them come in 202; until then the table accepts no rows.

CREATE TABLE IF NOT EXISTS public.email_accounts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  display_name text,
  provider text NOT NULL DEFAULT 'smtp' CHECK (provider IN ('smtp', 'gmail', 'outlook', 'ses', 'sendgrid')),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'warming', 'paused', 'error', 'disconnected')),
  daily_limit bigint NOT NULL DEFAULT 50 CHECK (daily_limit > 0),
  smtp_host text,
  smtp_port bigint,
  credentials_ref text,
  warmup_enabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, email)
);
CREATE INDEX IF NOT EXISTS email_accounts_workspace_status_idx ON public.email_accounts (workspace_id, status);

CREATE TABLE IF NOT EXISTS public.email_templates (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  subject text NOT NULL,
  body text NOT NULL,
  created_by uuid REFERENCES public.users (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS email_templates_workspace_created_idx ON public.email_templates (workspace_id, created_at DESC);

CREATE TABLE IF NOT EXISTS public.email_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  campaign_id uuid REFERENCES public.campaigns (id) ON DELETE SET NULL,
  sequence_id uuid REFERENCES public.campaign_sequences (id) ON DELETE SET NULL,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  email_account_id uuid REFERENCES public.email_accounts (id) ON DELETE SET NULL,
  direction text NOT NULL DEFAULT 'outbound' CHECK (direction IN ('outbound', 'inbound')),
  message_id text NOT NULL,
  thread_id text,
  subject text,
  body_text text,
  status text NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'bounced', 'failed', 'received')),
  sent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, message_id)
);
CREATE INDEX IF NOT EXISTS email_messages_workspace_created_idx ON public.email_messages (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS email_messages_workspace_status_idx ON public.email_messages (workspace_id, status);
CREATE INDEX IF NOT EXISTS email_messages_campaign_sent_idx ON public.email_messages (campaign_id, sent_at DESC);
CREATE INDEX IF NOT EXISTS email_messages_lead_created_idx ON public.email_messages (lead_id, created_at DESC);
CREATE INDEX IF NOT EXISTS email_messages_account_sent_idx ON public.email_messages (email_account_id, sent_at DESC);
CREATE INDEX IF NOT EXISTS email_messages_workspace_thread_idx ON public.email_messages (workspace_id, thread_id);

CREATE TABLE IF NOT EXISTS public.email_events (
  id bigint GENERATED ALWAYS AS IDENTITY,
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  message_id uuid,
  campaign_id uuid,
  lead_id uuid,
  email_account_id uuid,
  event_type text NOT NULL
    CHECK (event_type IN ('sent', 'delivered', 'opened', 'clicked', 'replied', 'bounced', 'complained', 'unsubscribed')),
  bounce_type text CHECK (bounce_type IN ('hard', 'soft')),
  url text,
  user_agent text,
  ip_address inet,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  occurred_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
-- Message, campaign and lead references are not foreign keys: archived months must stay restorable after
-- the rows they point to are gone, and FKs from a partitioned table would block DETACH ... CONCURRENTLY.
CREATE INDEX IF NOT EXISTS email_events_workspace_occurred_idx ON public.email_events (workspace_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS email_events_workspace_type_occurred_idx ON public.email_events (workspace_id, event_type, occurred_at DESC);
CREATE INDEX IF NOT EXISTS email_events_campaign_type_idx ON public.email_events (campaign_id, event_type);
CREATE INDEX IF NOT EXISTS email_events_message_type_idx ON public.email_events (message_id, event_type);
CREATE INDEX IF NOT EXISTS email_events_lead_occurred_idx ON public.email_events (lead_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS email_events_account_type_occurred_idx ON public.email_events (email_account_id, event_type, occurred_at);

DROP TRIGGER IF EXISTS email_accounts_touch ON public.email_accounts;
CREATE TRIGGER email_accounts_touch BEFORE UPDATE ON public.email_accounts FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

SELECT app.secure_tenant_table('public.email_accounts');
SELECT app.secure_tenant_table('public.email_templates');
SELECT app.secure_tenant_table('public.email_messages');
SELECT app.secure_tenant_table('public.email_events');
