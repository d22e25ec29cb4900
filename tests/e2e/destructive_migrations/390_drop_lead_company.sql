-- A destructive file for the live two-person approval test (tests/e2e/test_live_two_person.py).
ALTER TABLE public.leads DROP COLUMN company;
