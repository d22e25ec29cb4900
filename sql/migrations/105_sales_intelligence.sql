-- 105 sales intelligence: intent signals collected about leads' companies, and the scores derived from them.

CREATE TABLE IF NOT EXISTS public.intent_signals (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE,
  company_domain text,
  signal_type text NOT NULL
    CHECK (signal_type IN ('website_visit', 'job_posting', 'funding', 'tech_change', 'news', 'social_mention', 'email_engagement')),
  strength numeric(5, 2) NOT NULL DEFAULT 1 CHECK (strength >= 0),
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  detected_at timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS intent_signals_workspace_detected_idx ON public.intent_signals (workspace_id, detected_at DESC);
CREATE INDEX IF NOT EXISTS intent_signals_workspace_type_idx ON public.intent_signals (workspace_id, signal_type);
CREATE INDEX IF NOT EXISTS intent_signals_lead_detected_idx ON public.intent_signals (lead_id, detected_at DESC);

CREATE TABLE IF NOT EXISTS public.lead_scores (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  score numeric(6, 2) NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100),
  intent_score numeric(6, 2) NOT NULL DEFAULT 0,
  engagement_score numeric(6, 2) NOT NULL DEFAULT 0,
  fit_score numeric(6, 2) NOT NULL DEFAULT 0,
  computed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (lead_id)
);
CREATE INDEX IF NOT EXISTS lead_scores_workspace_score_idx ON public.lead_scores (workspace_id, score DESC);

CREATE TABLE IF NOT EXISTS public.company_enrichment (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  domain text NOT NULL,
  name text,
  industry text,
  employee_count bigint,
  annual_revenue_usd numeric(16, 2),
  technologies text[] NOT NULL DEFAULT '{}',
  enriched_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, domain)
);
CREATE INDEX IF NOT EXISTS company_enrichment_workspace_industry_idx ON public.company_enrichment (workspace_id, industry);

SELECT app.secure_tenant_table('public.intent_signals');
SELECT app.secure_tenant_table('public.lead_scores');
SELECT app.secure_tenant_table('public.company_enrichment');
