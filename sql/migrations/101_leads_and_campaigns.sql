-- 101 leads and campaigns: prospects, lists, campaigns, sequences and the enrolment of leads in them.

CREATE TABLE IF NOT EXISTS public.leads (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  first_name text,
  last_name text,
  company text,
  title text,
  phone text,
  linkedin_url text,
  website text,
  country text,
  status text NOT NULL DEFAULT 'new'
    CHECK (status IN ('new', 'contacted', 'engaged', 'replied', 'interested', 'not_interested', 'bounced', 'unsubscribed')),
  source text NOT NULL DEFAULT 'import' CHECK (source IN ('import', 'api', 'manual', 'hubspot', 'salesforce', 'linkedin')),
  custom_fields jsonb NOT NULL DEFAULT '{}'::jsonb,
  owner_id uuid REFERENCES public.users (id),
  last_contacted_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, email)
);
CREATE INDEX IF NOT EXISTS leads_workspace_created_idx ON public.leads (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS leads_workspace_status_idx ON public.leads (workspace_id, status);
CREATE INDEX IF NOT EXISTS leads_workspace_company_idx ON public.leads (workspace_id, company);
CREATE INDEX IF NOT EXISTS leads_workspace_owner_idx ON public.leads (workspace_id, owner_id);
CREATE INDEX IF NOT EXISTS leads_workspace_last_contacted_idx ON public.leads (workspace_id, last_contacted_at DESC);

CREATE TABLE IF NOT EXISTS public.lead_lists (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  description text,
  created_by uuid REFERENCES public.users (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lead_lists_workspace_created_idx ON public.lead_lists (workspace_id, created_at DESC);

CREATE TABLE IF NOT EXISTS public.lead_list_members (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  list_id uuid NOT NULL REFERENCES public.lead_lists (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  added_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (list_id, lead_id)
);
CREATE INDEX IF NOT EXISTS lead_list_members_workspace_lead_idx ON public.lead_list_members (workspace_id, lead_id);

CREATE TABLE IF NOT EXISTS public.campaigns (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'scheduled', 'active', 'paused', 'completed', 'archived')),
  daily_send_limit bigint NOT NULL DEFAULT 200 CHECK (daily_send_limit > 0),
  timezone text NOT NULL DEFAULT 'UTC',
  send_window jsonb NOT NULL DEFAULT '{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}'::jsonb,
  track_opens boolean NOT NULL DEFAULT true,
  track_clicks boolean NOT NULL DEFAULT true,
  created_by uuid REFERENCES public.users (id),
  started_at timestamptz,
  completed_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS campaigns_workspace_created_idx ON public.campaigns (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS campaigns_workspace_status_idx ON public.campaigns (workspace_id, status);

CREATE TABLE IF NOT EXISTS public.campaign_sequences (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  campaign_id uuid NOT NULL REFERENCES public.campaigns (id) ON DELETE CASCADE,
  step_number bigint NOT NULL CHECK (step_number >= 1),
  delay_days bigint NOT NULL DEFAULT 0 CHECK (delay_days >= 0),
  subject text NOT NULL,
  body text NOT NULL,
  variant text NOT NULL DEFAULT 'A',
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (campaign_id, step_number, variant)
);
CREATE INDEX IF NOT EXISTS campaign_sequences_workspace_campaign_idx ON public.campaign_sequences (workspace_id, campaign_id);

CREATE TABLE IF NOT EXISTS public.campaign_leads (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  campaign_id uuid NOT NULL REFERENCES public.campaigns (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  status text NOT NULL DEFAULT 'queued'
    CHECK (status IN ('queued', 'in_progress', 'replied', 'bounced', 'unsubscribed', 'completed', 'paused')),
  current_step bigint NOT NULL DEFAULT 0,
  next_send_at timestamptz,
  enrolled_at timestamptz NOT NULL DEFAULT now(),
  completed_at timestamptz,
  UNIQUE (campaign_id, lead_id)
);
CREATE INDEX IF NOT EXISTS campaign_leads_workspace_status_idx ON public.campaign_leads (workspace_id, status);
CREATE INDEX IF NOT EXISTS campaign_leads_campaign_status_idx ON public.campaign_leads (campaign_id, status);
CREATE INDEX IF NOT EXISTS campaign_leads_status_next_send_idx ON public.campaign_leads (status, next_send_at);
CREATE INDEX IF NOT EXISTS campaign_leads_lead_campaign_idx ON public.campaign_leads (lead_id, campaign_id);

CREATE TABLE IF NOT EXISTS public.unsubscribes (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, email)
);

DROP TRIGGER IF EXISTS leads_touch ON public.leads;
CREATE TRIGGER leads_touch BEFORE UPDATE ON public.leads FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();
DROP TRIGGER IF EXISTS campaigns_touch ON public.campaigns;
CREATE TRIGGER campaigns_touch BEFORE UPDATE ON public.campaigns FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

SELECT app.secure_tenant_table('public.leads');
SELECT app.secure_tenant_table('public.lead_lists');
SELECT app.secure_tenant_table('public.lead_list_members');
SELECT app.secure_tenant_table('public.campaigns');
SELECT app.secure_tenant_table('public.campaign_sequences');
SELECT app.secure_tenant_table('public.campaign_leads');
SELECT app.secure_tenant_table('public.unsubscribes');
