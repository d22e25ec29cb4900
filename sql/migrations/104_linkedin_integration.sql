-- 104 LinkedIn: connected profiles, lead-to-profile matches and outreach messages.

CREATE TABLE IF NOT EXISTS public.linkedin_profiles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid REFERENCES public.leads (id) ON DELETE CASCADE,
  profile_url text NOT NULL,
  headline text,
  company text,
  connection_status text NOT NULL DEFAULT 'none'
    CHECK (connection_status IN ('none', 'pending', 'connected', 'withdrawn')),
  last_synced_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, profile_url)
);
CREATE INDEX IF NOT EXISTS linkedin_profiles_workspace_lead_idx ON public.linkedin_profiles (workspace_id, lead_id);
CREATE INDEX IF NOT EXISTS linkedin_profiles_workspace_status_idx ON public.linkedin_profiles (workspace_id, connection_status);

CREATE TABLE IF NOT EXISTS public.linkedin_messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  profile_id uuid NOT NULL REFERENCES public.linkedin_profiles (id) ON DELETE CASCADE,
  campaign_id uuid REFERENCES public.campaigns (id) ON DELETE SET NULL,
  kind text NOT NULL DEFAULT 'message' CHECK (kind IN ('connection_request', 'message', 'inmail')),
  body text NOT NULL,
  status text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'accepted', 'replied', 'failed')),
  sent_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS linkedin_messages_workspace_created_idx ON public.linkedin_messages (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS linkedin_messages_workspace_status_idx ON public.linkedin_messages (workspace_id, status);

SELECT app.secure_tenant_table('public.linkedin_profiles');
SELECT app.secure_tenant_table('public.linkedin_messages');
