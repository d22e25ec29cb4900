-- A migration written for bench/load.py: a nullable column on a hot table (catalog-only, under lock_timeout).
ALTER TABLE public.campaigns ADD COLUMN IF NOT EXISTS load_bench_note text;
