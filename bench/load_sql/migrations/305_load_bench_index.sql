-- A migration written for bench/load.py: an index on a hot table, built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_company_title_idx ON public.leads (company, title);
