"""What the tests share: the repository's root, the S3 endpoint (:mod:`~tests.support.s3_endpoint`), the change
archive's set-up and replays (:mod:`~tests.support.pitr`)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def closed_table(name: str) -> str:
    """A pending file making ``public.<name>`` with row level security on: graded *safe* (one approver).
    Without it, a table in ``public`` is security-relevant (anon and authenticated hold ALL on it on Supabase)."""
    return (f"CREATE TABLE public.{name} (id bigint PRIMARY KEY);\n"
            f"ALTER TABLE public.{name} ENABLE ROW LEVEL SECURITY;\n")
