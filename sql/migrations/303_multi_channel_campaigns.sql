-- 303 multi-channel campaigns: steps on email, LinkedIn, Twitter, phone and manual tasks, and each lead's touchpoints.

CREATE TABLE IF NOT EXISTS public.campaign_channel_steps (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  campaign_id uuid NOT NULL REFERENCES public.campaigns (id) ON DELETE CASCADE,
  step_number bigint NOT NULL CHECK (step_number >= 1),
  channel text NOT NULL CHECK (channel IN ('email', 'linkedin', 'twitter', 'phone', 'task')),
  delay_days bigint NOT NULL DEFAULT 0 CHECK (delay_days >= 0),
  config jsonb NOT NULL DEFAULT '{}'::jsonb,
  sequence_id uuid REFERENCES public.campaign_sequences (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (campaign_id, step_number)
);
CREATE INDEX IF NOT EXISTS campaign_channel_steps_workspace_campaign_idx ON public.campaign_channel_steps (workspace_id, campaign_id);

CREATE TABLE IF NOT EXISTS public.channel_touchpoints (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  campaign_id uuid NOT NULL REFERENCES public.campaigns (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  step_id uuid REFERENCES public.campaign_channel_steps (id) ON DELETE SET NULL,
  channel text NOT NULL CHECK (channel IN ('email', 'linkedin', 'twitter', 'phone', 'task')),
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'skipped', 'failed')),
  due_at timestamptz,
  done_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS channel_touchpoints_workspace_status_idx ON public.channel_touchpoints (workspace_id, status);
CREATE INDEX IF NOT EXISTS channel_touchpoints_workspace_created_idx ON public.channel_touchpoints (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS channel_touchpoints_campaign_lead_idx ON public.channel_touchpoints (campaign_id, lead_id);
CREATE INDEX IF NOT EXISTS channel_touchpoints_status_due_idx ON public.channel_touchpoints (status, due_at);

SELECT app.secure_tenant_table('public.campaign_channel_steps');
SELECT app.secure_tenant_table('public.channel_touchpoints');
