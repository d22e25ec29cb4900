-- 112 LinkedIn engagement analytics: per-profile daily engagement and per-post reactions.

CREATE TABLE IF NOT EXISTS public.linkedin_engagement_daily (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  profile_id uuid NOT NULL REFERENCES public.linkedin_profiles (id) ON DELETE CASCADE,
  activity_date date NOT NULL,
  profile_views bigint NOT NULL DEFAULT 0,
  post_reactions bigint NOT NULL DEFAULT 0,
  comments bigint NOT NULL DEFAULT 0,
  messages_sent bigint NOT NULL DEFAULT 0,
  messages_replied bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (profile_id, activity_date)
);
CREATE INDEX IF NOT EXISTS linkedin_engagement_daily_workspace_date_idx
  ON public.linkedin_engagement_daily (workspace_id, activity_date DESC);

CREATE TABLE IF NOT EXISTS public.linkedin_post_engagements (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  profile_id uuid NOT NULL REFERENCES public.linkedin_profiles (id) ON DELETE CASCADE,
  post_urn text NOT NULL,
  reaction text NOT NULL DEFAULT 'like' CHECK (reaction IN ('like', 'celebrate', 'support', 'insightful', 'comment', 'share')),
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS linkedin_post_engagements_workspace_occurred_idx
  ON public.linkedin_post_engagements (workspace_id, occurred_at DESC);

SELECT app.secure_tenant_table('public.linkedin_engagement_daily');
SELECT app.secure_tenant_table('public.linkedin_post_engagements');
