-- A migration written for bench/rehearsal.py: an index built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_country_status_idx ON public.leads (country, status);
