-- 111 AI meeting scheduler: members' availability, meeting requests detected in replies, booked meetings.

CREATE TABLE IF NOT EXISTS public.availability_slots (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  weekday bigint NOT NULL CHECK (weekday BETWEEN 0 AND 6),
  starts time NOT NULL DEFAULT '09:00',
  ends time NOT NULL DEFAULT '17:00',
  timezone text NOT NULL DEFAULT 'UTC',
  CHECK (ends > starts)
);
CREATE INDEX IF NOT EXISTS availability_slots_workspace_user_idx ON public.availability_slots (workspace_id, user_id);

CREATE TABLE IF NOT EXISTS public.meeting_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  message_id uuid REFERENCES public.email_messages (id) ON DELETE SET NULL,
  proposed_times tstzrange[] NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'detected' CHECK (status IN ('detected', 'proposed', 'booked', 'declined', 'expired')),
  confidence numeric(4, 3),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS meeting_requests_workspace_status_idx ON public.meeting_requests (workspace_id, status);

CREATE TABLE IF NOT EXISTS public.meetings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  lead_id uuid NOT NULL REFERENCES public.leads (id) ON DELETE CASCADE,
  host_id uuid REFERENCES public.users (id),
  request_id uuid REFERENCES public.meeting_requests (id) ON DELETE SET NULL,
  campaign_id uuid REFERENCES public.campaigns (id) ON DELETE SET NULL,
  starts_at timestamptz NOT NULL,
  duration interval NOT NULL DEFAULT interval '30 minutes',
  status text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'completed', 'cancelled', 'no_show')),
  calendar_event_id text,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS meetings_workspace_starts_idx ON public.meetings (workspace_id, starts_at DESC);
CREATE INDEX IF NOT EXISTS meetings_workspace_status_idx ON public.meetings (workspace_id, status);
CREATE INDEX IF NOT EXISTS meetings_host_starts_idx ON public.meetings (host_id, starts_at);

SELECT app.secure_tenant_table('public.availability_slots');
SELECT app.secure_tenant_table('public.meeting_requests');
SELECT app.secure_tenant_table('public.meetings');
