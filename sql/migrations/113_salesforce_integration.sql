-- 113 Salesforce: field mappings, incremental sync cursors and a sync log (the connection row lives in integrations).

CREATE TABLE IF NOT EXISTS public.salesforce_field_mappings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  integration_id uuid NOT NULL REFERENCES public.integrations (id) ON DELETE CASCADE,
  sobject text NOT NULL DEFAULT 'Lead' CHECK (sobject IN ('Lead', 'Contact', 'Account', 'Opportunity', 'Task')),
  coldcopy_field text NOT NULL,
  salesforce_field text NOT NULL,
  direction text NOT NULL DEFAULT 'both' CHECK (direction IN ('to_salesforce', 'from_salesforce', 'both')),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (integration_id, sobject, coldcopy_field)
);
CREATE INDEX IF NOT EXISTS salesforce_field_mappings_workspace_integration_idx
  ON public.salesforce_field_mappings (workspace_id, integration_id);

CREATE TABLE IF NOT EXISTS public.salesforce_sync_state (
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  integration_id uuid NOT NULL REFERENCES public.integrations (id) ON DELETE CASCADE,
  sobject text NOT NULL,
  last_modified_cursor timestamptz,
  records_synced bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (integration_id, sobject)
);

CREATE TABLE IF NOT EXISTS public.salesforce_sync_log (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  integration_id uuid NOT NULL REFERENCES public.integrations (id) ON DELETE CASCADE,
  sobject text NOT NULL,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
  records_synced bigint NOT NULL DEFAULT 0,
  error text,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS salesforce_sync_log_workspace_started_idx ON public.salesforce_sync_log (workspace_id, started_at DESC);
CREATE INDEX IF NOT EXISTS salesforce_sync_log_workspace_status_idx ON public.salesforce_sync_log (workspace_id, status);

SELECT app.secure_tenant_table('public.salesforce_field_mappings');
SELECT app.secure_tenant_table('public.salesforce_sync_state');
SELECT app.secure_tenant_table('public.salesforce_sync_log');
