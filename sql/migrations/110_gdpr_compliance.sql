-- 110 GDPR: consent records, data-subject requests, retention policies and a trigger-based audit trail.
--
-- The audit trail records who changed which row of a personal-data table, when, and which columns, but not
-- the values: copying personal data into the log would make every erasure request chase it there too.

CREATE TABLE IF NOT EXISTS public.consent_records (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid REFERENCES public.leads (id) ON DELETE SET NULL,
  email text NOT NULL CHECK (email = lower(email)),
  purpose text NOT NULL CHECK (purpose IN ('marketing', 'cold_outreach', 'analytics', 'profiling')),
  lawful_basis text NOT NULL DEFAULT 'legitimate_interest'
    CHECK (lawful_basis IN ('consent', 'legitimate_interest', 'contract', 'legal_obligation')),
  granted boolean NOT NULL,
  source text,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  withdrawn_at timestamptz
);
CREATE INDEX IF NOT EXISTS consent_records_workspace_email_idx ON public.consent_records (workspace_id, email);
CREATE INDEX IF NOT EXISTS consent_records_workspace_recorded_idx ON public.consent_records (workspace_id, recorded_at DESC);

CREATE TABLE IF NOT EXISTS public.data_subject_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email)),
  request_type text NOT NULL
    CHECK (request_type IN ('access', 'erasure', 'rectification', 'portability', 'restriction', 'objection')),
  status text NOT NULL DEFAULT 'received' CHECK (status IN ('received', 'verified', 'in_progress', 'completed', 'rejected')),
  due_at timestamptz NOT NULL DEFAULT now() + interval '30 days',
  completed_at timestamptz,
  handled_by uuid REFERENCES public.users (id),
  notes text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS data_subject_requests_workspace_status_idx ON public.data_subject_requests (workspace_id, status);
CREATE INDEX IF NOT EXISTS data_subject_requests_status_due_idx ON public.data_subject_requests (status, due_at);

CREATE TABLE IF NOT EXISTS public.data_retention_policies (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  table_name text NOT NULL,
  retain_for interval NOT NULL CHECK (retain_for > interval '0'),
  action text NOT NULL DEFAULT 'delete' CHECK (action IN ('delete', 'anonymize', 'archive')),
  last_applied_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workspace_id, table_name)
);

CREATE TABLE IF NOT EXISTS public.gdpr_audit_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  workspace_id uuid REFERENCES public.workspaces (id) ON DELETE CASCADE,
  table_name text NOT NULL,
  row_id text NOT NULL,
  action text NOT NULL CHECK (action IN ('INSERT', 'UPDATE', 'DELETE')),
  changed_columns text[] NOT NULL DEFAULT '{}',
  actor_id uuid,
  actor_role text NOT NULL DEFAULT current_user,
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS gdpr_audit_log_workspace_occurred_idx ON public.gdpr_audit_log (workspace_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS gdpr_audit_log_table_row_idx ON public.gdpr_audit_log (table_name, row_id);

CREATE OR REPLACE FUNCTION app.gdpr_audit()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
  new_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
  subject jsonb := coalesce(new_row, old_row);
  changed text[];
BEGIN
  IF TG_OP = 'UPDATE' THEN
    SELECT coalesce(array_agg(n.key ORDER BY n.key), '{}') INTO changed
    FROM jsonb_each(new_row) n
    WHERE n.value IS DISTINCT FROM old_row -> n.key AND n.key <> 'updated_at';  -- bookkeeping, not data
    IF changed = '{}' THEN
      RETURN NULL;
    END IF;
  ELSE
    SELECT coalesce(array_agg(k ORDER BY k), '{}') INTO changed FROM jsonb_object_keys(subject) k;
  END IF;
  INSERT INTO public.gdpr_audit_log (workspace_id, table_name, row_id, action, changed_columns, actor_id, actor_role)
  VALUES (
    CASE WHEN TG_TABLE_NAME = 'users' THEN NULL ELSE (subject ->> 'workspace_id')::uuid END,
    TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
    coalesce(subject ->> 'id', subject ->> 'lead_id', ''),
    TG_OP, changed, auth.uid(), session_user
  );
  RETURN NULL;
END
$$;

DO $$
DECLARE
  personal_table text;
BEGIN
  FOREACH personal_table IN ARRAY ARRAY[
    'users', 'leads', 'consent_records', 'data_subject_requests', 'linkedin_profiles', 'twitter_profiles',
    'unsubscribes', 'suppression_list'
  ] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS gdpr_audit ON public.%I', personal_table);
    EXECUTE format(
      'CREATE TRIGGER gdpr_audit AFTER INSERT OR UPDATE OR DELETE ON public.%I '
      'FOR EACH ROW EXECUTE FUNCTION app.gdpr_audit()', personal_table);
  END LOOP;
END
$$;

SELECT app.secure_tenant_table('public.consent_records');
SELECT app.secure_tenant_table('public.data_subject_requests');
SELECT app.secure_tenant_table('public.data_retention_policies');
SELECT app.secure_tenant_table('public.gdpr_audit_log');
-- The audit trail is append-only for everyone but service_role, and readable by workspace admins only.
DROP POLICY IF EXISTS workspace_isolation ON public.gdpr_audit_log;
DROP POLICY IF EXISTS audit_admin_read ON public.gdpr_audit_log;
CREATE POLICY audit_admin_read ON public.gdpr_audit_log FOR SELECT TO authenticated
  USING ((SELECT app.is_workspace_admin(workspace_id)));
REVOKE INSERT, UPDATE, DELETE ON public.gdpr_audit_log FROM authenticated;
