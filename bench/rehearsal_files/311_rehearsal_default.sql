-- A migration written for bench/rehearsal.py: a column with a constant default (catalog only, no rewrite).
ALTER TABLE public.leads ADD COLUMN IF NOT EXISTS rehearsal_note text NOT NULL DEFAULT 'none';
