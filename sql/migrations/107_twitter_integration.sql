-- 107 Twitter/X: matched profiles and social engagements used as intent signals.

CREATE TABLE IF NOT EXISTS public.twitter_profiles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE,
  handle text NOT NULL,
  followers bigint,
  last_synced_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, handle)
);
CREATE INDEX IF NOT EXISTS twitter_profiles_workspace_lead_idx ON public.twitter_profiles (workspace_id, lead_id);

CREATE TABLE IF NOT EXISTS public.twitter_engagements (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  profile_id uuid NOT NULL REFERENCES public.twitter_profiles (id) ON DELETE CASCADE,
  kind text NOT NULL CHECK (kind IN ('mention', 'reply', 'like', 'retweet', 'follow', 'dm')),
  tweet_id text,
  content text,
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS twitter_engagements_workspace_occurred_idx ON public.twitter_engagements (workspace_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS twitter_engagements_profile_occurred_idx ON public.twitter_engagements (profile_id, occurred_at DESC);

SELECT app.secure_tenant_table('public.twitter_profiles');
SELECT app.secure_tenant_table('public.twitter_engagements');
