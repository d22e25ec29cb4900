-- A migration written for bench/rehearsal.py: a type change that rewrites a hot table under ACCESS EXCLUSIVE.
ALTER TABLE public.leads ALTER COLUMN last_contacted_at TYPE timestamptz(0);
