-- 304 workflow automation: trigger-condition-action workflows and their runs.

CREATE TABLE IF NOT EXISTS public.workflows (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  name text NOT NULL,
  trigger_event text NOT NULL
    CHECK (trigger_event IN ('lead_created', 'email_replied', 'email_opened', 'email_bounced', 'meeting_booked', 'score_changed', 'schedule')),
  conditions jsonb NOT NULL DEFAULT '[]'::jsonb,
  status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'paused', 'archived')),
  created_by uuid REFERENCES public.users (id),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workflows_workspace_status_idx ON public.workflows (workspace_id, status);
CREATE INDEX IF NOT EXISTS workflows_workspace_trigger_idx ON public.workflows (workspace_id, trigger_event);

CREATE TABLE IF NOT EXISTS public.workflow_actions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  workflow_id uuid NOT NULL REFERENCES public.workflows (id) ON DELETE CASCADE,
  position bigint NOT NULL CHECK (position >= 1),
  action_type text NOT NULL
    CHECK (action_type IN ('send_email', 'add_to_campaign', 'update_lead', 'notify', 'webhook', 'sync_crm', 'wait')),
  config jsonb NOT NULL DEFAULT '{}'::jsonb,
  UNIQUE (workflow_id, position)
);
CREATE INDEX IF NOT EXISTS workflow_actions_workspace_workflow_idx ON public.workflow_actions (workspace_id, workflow_id);

CREATE TABLE IF NOT EXISTS public.workflow_runs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  workflow_id uuid NOT NULL REFERENCES public.workflows (id) ON DELETE CASCADE,
  lead_id uuid REFERENCES public.leads (id) ON DELETE SET NULL,
  status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
  current_position bigint NOT NULL DEFAULT 1,
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS workflow_runs_workspace_created_idx ON public.workflow_runs (workspace_id, created_at DESC);
CREATE INDEX IF NOT EXISTS workflow_runs_workspace_status_idx ON public.workflow_runs (workspace_id, status);
CREATE INDEX IF NOT EXISTS workflow_runs_workflow_created_idx ON public.workflow_runs (workflow_id, created_at DESC);

DROP TRIGGER IF EXISTS workflows_touch ON public.workflows;
CREATE TRIGGER workflows_touch BEFORE UPDATE ON public.workflows FOR EACH ROW EXECUTE FUNCTION app.touch_updated_at();

SELECT app.secure_tenant_table('public.workflows');
SELECT app.secure_tenant_table('public.workflow_actions');
SELECT app.secure_tenant_table('public.workflow_runs');
