-- 108 smart replies: classification of inbound replies and AI-drafted answers awaiting a human.

CREATE TABLE IF NOT EXISTS public.reply_classifications (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  message_id uuid NOT NULL REFERENCES public.email_messages (id) ON DELETE CASCADE,
  category text NOT NULL
    CHECK (category IN ('interested', 'not_interested', 'meeting_request', 'out_of_office', 'referral', 'question', 'unsubscribe', 'other')),
  sentiment numeric(4, 3),
  confidence numeric(4, 3) NOT NULL DEFAULT 0,
  model text NOT NULL DEFAULT 'unknown',
  classified_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (message_id)
);
CREATE INDEX IF NOT EXISTS reply_classifications_workspace_category_idx ON public.reply_classifications (workspace_id, category);

CREATE TABLE IF NOT EXISTS public.smart_reply_suggestions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  workspace_id uuid NOT NULL REFERENCES public.workspaces (id) ON DELETE CASCADE,
  message_id uuid NOT NULL REFERENCES public.email_messages (id) ON DELETE CASCADE,
  suggestion text NOT NULL,
  tone text NOT NULL DEFAULT 'neutral',
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'edited', 'rejected')),
  reviewed_by uuid REFERENCES public.users (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS smart_reply_suggestions_workspace_status_idx ON public.smart_reply_suggestions (workspace_id, status);
CREATE INDEX IF NOT EXISTS smart_reply_suggestions_message_created_idx ON public.smart_reply_suggestions (message_id, created_at DESC);

SELECT app.secure_tenant_table('public.reply_classifications');
SELECT app.secure_tenant_table('public.smart_reply_suggestions');
