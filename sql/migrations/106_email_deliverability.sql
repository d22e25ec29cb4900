-- 106 deliverability: sending domains and their DNS checks, warm-up, suppression, daily per-account health.

CREATE TABLE IF NOT EXISTS public.sending_domains (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  domain text NOT NULL,
  spf_valid boolean NOT NULL DEFAULT false,
  dkim_valid boolean NOT NULL DEFAULT false,
  dmarc_valid boolean NOT NULL DEFAULT false,
  dmarc_policy text,
  last_checked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, domain)
);

CREATE TABLE IF NOT EXISTS public.warmup_schedules (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email_account_id uuid NOT NULL REFERENCES public.email_accounts (id) ON DELETE CASCADE,
  day_number bigint NOT NULL CHECK (day_number >= 1),
  target_volume bigint NOT NULL CHECK (target_volume >= 0),
  actual_volume bigint NOT NULL DEFAULT 0,
  scheduled_for date NOT NULL,
  UNIQUE (email_account_id, day_number)
);
CREATE INDEX IF NOT EXISTS warmup_schedules_workspace_scheduled_idx ON public.warmup_schedules (workspace_id, scheduled_for);

CREATE TABLE IF NOT EXISTS public.suppression_list (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  reason text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual', 'gdpr_erasure')),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, email)
);
CREATE INDEX IF NOT EXISTS suppression_list_workspace_reason_idx ON public.suppression_list (workspace_id, reason);

CREATE TABLE IF NOT EXISTS public.deliverability_metrics (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email_account_id uuid NOT NULL REFERENCES public.email_accounts (id) ON DELETE CASCADE,
  metric_date date NOT NULL,
  sent bigint NOT NULL DEFAULT 0,
  delivered bigint NOT NULL DEFAULT 0,
  bounced bigint NOT NULL DEFAULT 0,
  complaints bigint NOT NULL DEFAULT 0,
  spam_placement_rate numeric(5, 4),
  reputation_score numeric(5, 2),
  PRIMARY KEY (email_account_id, metric_date)
);
CREATE INDEX IF NOT EXISTS deliverability_metrics_workspace_date_idx ON public.deliverability_metrics (workspace_id, metric_date DESC);

SELECT app.secure_tenant_table('public.sending_domains');
SELECT app.secure_tenant_table('public.warmup_schedules');
SELECT app.secure_tenant_table('public.suppression_list');
SELECT app.secure_tenant_table('public.deliverability_metrics');
