-- 102 HubSpot: workspace-level CRM connection, field mappings and a sync log.

CREATE TABLE IF NOT EXISTS public.integrations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  provider text NOT NULL CHECK (provider IN ('hubspot', 'salesforce', 'linkedin', 'twitter', 'google_calendar', 'outlook_calendar')),
  status text NOT NULL DEFAULT 'connected' CHECK (status IN ('connected', 'error', 'disconnected')),
  external_account_id text,
  credentials_ref text,
  settings jsonb NOT NULL DEFAULT '{}'::jsonb,
  last_synced_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, provider)
);
CREATE INDEX IF NOT EXISTS integrations_workspace_status_idx ON public.integrations (workspace_id, status);
CREATE INDEX IF NOT EXISTS integrations_provider_status_idx ON public.integrations (provider, status);

CREATE TABLE IF NOT EXISTS public.hubspot_field_mappings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  integration_id uuid NOT NULL REFERENCES public.integrations (id) ON DELETE CASCADE,
  coldcopy_field text NOT NULL,
  hubspot_property text NOT NULL,
  direction text NOT NULL DEFAULT 'both' CHECK (direction IN ('to_hubspot', 'from_hubspot', 'both')),
  transform text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (integration_id, coldcopy_field)
);
CREATE INDEX IF NOT EXISTS hubspot_field_mappings_workspace_integration_idx ON public.hubspot_field_mappings (workspace_id, integration_id);

CREATE TABLE IF NOT EXISTS public.hubspot_sync_log (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  integration_id uuid NOT NULL REFERENCES public.integrations (id) ON DELETE CASCADE,
  object_type text NOT NULL,
  records_synced bigint NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
  error text,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS hubspot_sync_log_workspace_started_idx ON public.hubspot_sync_log (workspace_id, started_at DESC);

SELECT app.secure_tenant_table('public.integrations');
SELECT app.secure_tenant_table('public.hubspot_field_mappings');
SELECT app.secure_tenant_table('public.hubspot_sync_log');
